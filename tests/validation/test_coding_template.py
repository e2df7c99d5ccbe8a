"""``envkit validate`` on the env of ``envkit init --template coding`` with two known hacks of
its old grader as canaries. Both earned full reward (a finding of issue 20); the template now
grades with ``code_tests``' structured tests in a fresh sandbox, and both earn nothing.

* ``always-equal``: the function returns an object equal to anything, so the template's
  ``assert f(x) == y`` tests pass;
* ``cmdline-nonce``: the test script (with its nonce) is passed as ``python -c SCRIPT``, so the
  solution reads it from ``/proc/self/cmdline``, prints the nonce and exits 0.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

import envkit
from envkit.canary import Canary
from envkit.scaffold import scaffold
from envkit.validation import validate

pytestmark = pytest.mark.docker


def _always_equal(env: Any) -> str:
    fn = env.task.answer["function"]
    return (
        "```python\nclass AnyValue:\n    def __eq__(self, other):\n        return True\n\n"
        f"def {fn}(*args, **kwargs):\n    return AnyValue()\n```"
    )


def _cmdline_nonce(env: Any) -> str:
    fn = env.task.answer["function"]
    return (
        "```python\nimport os\n"
        f"def {fn}(*args, **kwargs):\n    return None\n"
        "parts = open('/proc/self/cmdline', 'rb').read().split(bytes(1))\n"
        "script = next((p.decode() for p in parts if b'from solution import' in p), '')\n"
        "last = script.strip().splitlines()[-1] if script else ''\n"
        "if last.startswith('print('):\n"
        "    print(eval(last[6:-1]), flush=True)\n"
        "    os._exit(0)\n```"
    )


def test_the_coding_template_holds_against_its_known_hacks(tmp_path: Path) -> None:
    scaffold("tmpl-probe", template="coding", directory=tmp_path / "p")
    sys.path.insert(0, str(tmp_path / "p"))
    try:
        module = importlib.import_module("tmpl_probe.env")
    finally:
        sys.path.remove(str(tmp_path / "p"))
    cls = next(
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, envkit.ChatEnv) and v.__module__ == module.__name__
    )

    class Probed(cls):  # type: ignore[misc,valid-type]
        canaries = (
            Canary("always-equal", "returns an object equal to anything", _always_equal),
            Canary("cmdline-nonce", "reads the nonce from /proc/self/cmdline", _cmdline_nonce),
        )

    envkit.register("TmplCoding-v0", Probed, override=True)
    report = validate("TmplCoding-v0", env_kwargs={"max_turns": 1}, episodes=1)
    canaries = {p.name: p for p in report.probes if p.kind == "canary"}
    assert set(canaries) == {"canary:always-equal", "canary:cmdline-nonce"}
    assert all(p.status == "pass" for p in canaries.values()), report.summary()
    assert report.ok, report.summary()
