"""One process of the 2-process metric merge test (started by ``torch.distributed.run``).

Each process makes the step metrics of its own episodes, merges them with
``EpisodeSource``'s ``_merge_across_processes`` (accelerate's ``gather_object`` over gloo) and
writes what it got to ``OUT/rank<N>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from accelerate import PartialState

from envkit.trainers.diagnostics import step_diagnostics
from envkit.trainers.episodes import _merge_across_processes
from envkit.trainers.mixture import per_env_metrics
from envkit.types import Completion, Message, Trajectory, TrajectoryGroup


def _group(seed: int, rewards: list[float], tokens: int) -> TrajectoryGroup:
    turn = Completion(message=Message(role="assistant", content="x"), token_ids=[1] * tokens)
    return TrajectoryGroup(
        env_id="e",
        seed=seed,
        trajectories=[Trajectory(env_id="e", reward=r, completions=[turn]) for r in rewards],
    )


def main(out: Path) -> None:
    state = PartialState(cpu=True)  # gloo, as `accelerate launch` on a CPU machine
    rank = state.process_index
    assert state.num_processes == 2, state.num_processes
    groups = [_group(rank, [0.0, 1.0] if rank == 0 else [1.0, 1.0], tokens=3 + 10 * rank)]
    metrics = step_diagnostics(groups)
    metrics.update(per_env_metrics(groups, ["envkit/E-v0"]))
    lag = [1.0, 3.0][rank]
    metrics.update({"staleness/mean": lag, "staleness/max": lag, "time/rollout_s": 2.0 + rank})
    metrics.update({"staleness/prefetch_miss": float(rank), "custom/undeclared": 10.0 * rank})
    merged = _merge_across_processes(metrics)
    (out / f"rank{rank}.json").write_text(json.dumps(merged))
    state.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
