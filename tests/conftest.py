"""Session-wide test hooks."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
import uuid
from collections.abc import Iterator

import gymnasium as gym
import pytest

# Shared test helper modules at this level (adapter_support) import by name, as the per-folder
# *_support modules do (pytest runs with --import-mode=importlib: nothing is on sys.path by itself).
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# The `openai_server` fixture (a scripted OpenAI-compatible server on 127.0.0.1) for every test.
pytest_plugins = ["envkit.testing.pytest_plugin"]

# Every sandbox container made by this run (and by processes it starts) carries this run id.
os.environ.setdefault("ENVKIT_SANDBOX_RUN_ID", f"pytest-{uuid.uuid4().hex[:10]}")


def _leftover_sandboxes() -> list[str] | None:
    """Names of this run's sandbox containers still known to Docker (None: no daemon)."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:
        return None
    filters = {"label": ["envkit.sandbox", f"envkit.run_id={os.environ['ENVKIT_SANDBOX_RUN_ID']}"]}
    try:
        return [c.name for c in client.containers.list(all=True, filters=filters)]
    finally:
        client.close()


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Removes every id a test registers from gymnasium's registry afterwards."""
    before = set(gym.registry)
    yield
    for env_id in set(gym.registry) - before:
        del gym.registry[env_id]


# Peak memory, reported like --durations: the tests during which this process's peak RSS grew
# most (a test that retains models, logits or episodes shows up here before it adds up to GBs).
_RSS_GROWTH: list[tuple[float, str]] = []


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    before = _peak_rss_gib()
    yield
    grown = _peak_rss_gib() - before
    if grown > 0.05:
        _RSS_GROWTH.append((grown, item.nodeid))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Prints the peak RSS of this pytest process and the tests that raised it most."""
    if not _RSS_GROWTH:
        return
    terminalreporter.section("peak RSS growth (this process)")
    for grown, nodeid in sorted(_RSS_GROWTH, reverse=True)[:10]:
        terminalreporter.write_line(f"+{grown:5.2f} GiB  {nodeid}")
    terminalreporter.write_line(f"peak RSS {_peak_rss_gib():.2f} GiB")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fails the run if any sandbox container of this run outlived the tests."""
    if "envkit.sandbox.pool" in sys.modules:  # process-wide pools live until exit: end them now
        sys.modules["envkit.sandbox.pool"].close_shared_pools()
    deadline = time.monotonic() + 15  # Docker's AutoRemove may still be finishing a removal
    leftovers = _leftover_sandboxes()
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.5)
        leftovers = _leftover_sandboxes()
    if leftovers:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"LEAK: {len(leftovers)} envkit sandbox container(s) outlived the tests: "
                f"{', '.join(leftovers)}",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        _remove(leftovers)


def _remove(names: list[str]) -> None:
    import docker

    client = docker.from_env(timeout=30)
    for name in names:
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_container(name, force=True)
    client.close()
