"""Step metrics of a multi-process run are merged by the reduction declared with each metric.

The old merge decided by name suffix: ``staleness/max`` was averaged and always equalled
``staleness/mean``. Two real gloo processes (``torch.distributed.run``, no model) gather their
metrics with accelerate, as ``accelerate launch`` runs do.
"""

from __future__ import annotations

import fnmatch
import json
import math
import sys
from pathlib import Path

import pytest

from envkit.metrics import merge_metrics, reduction_of
from envkit.trainers.episodes import step_metric_reductions

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from train_support import run_two_processes  # noqa: E402


def test_every_metric_a_step_logs_has_a_declared_reduction() -> None:
    from envkit.trainers.diagnostics import step_diagnostics
    from envkit.trainers.episodes import STEP_METRICS
    from envkit.trainers.mixture import per_env_metrics
    from envkit.types import Trajectory, TrajectoryGroup

    group = TrajectoryGroup(env_id="e", trajectories=[Trajectory(env_id="e", reward=1.0)] * 2)
    names = [*step_diagnostics([group]), *per_env_metrics([group], ["a/B-v0"]), *STEP_METRICS]
    names += ["judge/hacking_flagged_frac", "reward/correct"]  # present only sometimes
    declared = step_metric_reductions()
    undeclared = [n for n in names if not _declared(n, declared)]
    assert undeclared == []
    assert reduction_of("staleness/max", declared) == "max"
    assert reduction_of("env/a/B-v0/episodes", declared) == "sum"
    assert reduction_of("env/a/B-v0/groups/zero_variance_frac", declared) == "mean"


def _declared(name: str, declared: dict[str, str]) -> bool:
    return any(name == k or ("*" in k and fnmatch.fnmatchcase(name, k)) for k in declared)


def test_merge_uses_each_declared_reduction() -> None:
    parts = [
        {"a/max": 1.0, "a/min": 4.0, "a/sum": 1.0, "a/mean": 1.0, "new": 1.0, "gone": math.nan},
        {"a/max": 5.0, "a/min": 2.0, "a/sum": 2.0, "a/mean": 4.0, "new": 3.0, "gone": math.nan},
        {"a/max": math.nan, "a/min": 3.0, "a/sum": 4.0, "a/mean": 7.0},
    ]
    declared = {"a/max": "max", "a/min": "min", "a/sum": "sum", "a/*": "mean"}
    merged = merge_metrics(parts, declared)
    assert merged["a/max"] == 5.0 and merged["a/min"] == 2.0 and merged["a/sum"] == 7.0
    assert merged["a/mean"] == 4.0 and merged["new"] == 2.0  # undeclared: the mean
    assert math.isnan(merged["gone"])
    with pytest.raises(ValueError, match="declare each metric as one of mean, max, min, sum"):
        merge_metrics(parts, {"a/max": "maximum"})  # type: ignore[dict-item]


def test_two_processes_merge_max_as_max_and_counts_as_sums(tmp_path: Path) -> None:
    run_two_processes(HERE / "merge_support.py", str(tmp_path), timeout=500)
    texts = [(tmp_path / f"rank{r}.json").read_text() for r in (0, 1)]
    assert texts[0] == texts[1]  # every process logs the same numbers
    m = json.loads(texts[0])
    assert m["staleness/max"] == 3.0  # was 2.0: averaged like staleness/mean
    assert m["staleness/mean"] == 2.0
    assert m["staleness/prefetch_miss"] == 1.0  # one process replayed its step
    assert m["time/rollout_s"] == 3.0  # the step waits for the slower process
    assert m["completion/tokens_max"] == 13.0 and m["completion/tokens_mean"] == 8.0
    assert m["reward/mean"] == 0.75 and m["groups/zero_variance_frac"] == 0.5
    assert m["env/E-v0/episodes"] == 4.0 and m["env/E-v0/groups"] == 2.0
    assert m["episodes/failed"] == 0.0
    assert m["custom/undeclared"] == 5.0  # the documented default: the mean
