"""The Ray tests' cluster: two nodes on this host, started once for all of tests/ray.

Starting a cluster (two ``ray start`` processes, their GCS, raylets and agents) costs some
15 s of CPU, stopping it up to 10 s more: one cluster serves every module here. This process
connects to it once; the cluster is stopped (and checked to have left no process) as soon as
the next test to run is outside tests/ray, or at the end of the session.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from ray_support import Cluster, start_cluster  # noqa: E402

_UNSET = object()
_shared: dict[str, object] = {}  # "cluster": the running Cluster; "auth": RAY_AUTH_MODE before


def _running_cluster() -> Cluster:
    """The shared cluster, started (and this process connected to it) on first use."""
    import ray

    if "cluster" not in _shared:
        c = start_cluster()
        _shared["auth"] = os.environ.get("RAY_AUTH_MODE", _UNSET)
        os.environ["RAY_AUTH_MODE"] = c.env["RAY_AUTH_MODE"]  # this process must match it
        _shared["cluster"] = c
        try:
            ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
        except BaseException:
            _stop_cluster()
            raise
    c = _shared["cluster"]
    assert isinstance(c, Cluster)
    return c


def _stop_cluster() -> None:
    """Disconnects this process, ends every process of the shared cluster, checks none is left."""
    import ray

    c = _shared.pop("cluster", None)
    if not isinstance(c, Cluster):
        return
    try:
        ray.shutdown()
    finally:
        c.stop()
        before = _shared.pop("auth", _UNSET)
        if before is _UNSET:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = str(before)
    assert c.processes() == [], "a process of the test cluster outlived it"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A two-node cluster (``ray start --head`` plus ``ray start --address``) this process is
    connected to (``ray.init(address=...)``); shared by the modules of tests/ray, and stopped
    with every process of it once they are done."""
    yield _running_cluster()


@pytest.fixture(scope="session", autouse=True)
def _stop_cluster_at_session_end() -> Iterator[None]:
    yield
    _stop_cluster()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    """Stops the shared cluster after the last test of tests/ray (its module fixtures are torn
    down by then): the tests that follow run without an idle cluster beside them."""
    result = yield
    if nextitem is None or Path(_HERE) not in Path(str(nextitem.path)).parents:
        _stop_cluster()
    return result
