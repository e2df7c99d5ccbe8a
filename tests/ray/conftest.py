"""The Ray tests' cluster: two nodes on this host, started once per module, stopped after."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from ray_support import Cluster, start_cluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A two-node cluster (``ray start --head`` plus ``ray start --address``) this process is
    connected to; afterwards Ray is shut down here and every process of the cluster is ended."""
    import ray

    c = start_cluster()
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = c.env["RAY_AUTH_MODE"]  # this process must match the cluster
    try:
        ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
        yield c
    finally:
        ray.shutdown()
        c.stop()
        if before is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = before
    assert c.processes() == [], "a process of the test cluster outlived it"
