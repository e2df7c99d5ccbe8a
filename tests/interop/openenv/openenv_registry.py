"""``--import`` module of the CLI tests: registers the test games under envkit ids.

The servers' URLs come from the environment (the tests start the servers first).
"""

import os

from envkit.environments.openenv import register_openenv

register_openenv(
    "OpenEnvGuessCli-v0", url=os.environ["OPENENV_TEST_GUESS_URL"], max_turns=3, override=True
)
register_openenv(
    "OpenEnvCalcCli-v0", url=os.environ["OPENENV_TEST_CALC_URL"], max_turns=3, override=True
)
