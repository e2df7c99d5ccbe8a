"""The run folder: one directory that holds everything a training run produced.

Layout::

    RUN_DIR/
      run.json                 env id, model, reward, envkit version (what was trained on what)
      config.yaml              the full GRPOConfig
      metrics.jsonl            one JSON object per optimizer step (and per evaluation)
      trajectories/step-000001.jsonl   the step's TrajectoryGroups (step-000001.rank1.jsonl: the
                                       groups process 1 played in a multi-process run)
      reward_curve.png         redrawn as the run goes and by ``envkit report``
      checkpoints/checkpoint-N/        resumable: adapter (peft), optimizer, scheduler, RNG, step
      adapter/                 the final LoRA adapter (peft format)
      tensorboard/             when report_to includes "tensorboard"

Example:
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.append_metrics({"step": 1, "reward/mean": 0.5})
    >>> run.read_metrics()[0]["reward/mean"]
    0.5
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envkit.types import TrajectoryGroup, write_jsonl

__all__ = [
    "COMPLETE_MARKER",
    "RunDir",
    "parse_trajectory_file_name",
    "trajectory_file_name",
    "trajectory_files",
]

COMPLETE_MARKER = "envkit_checkpoint.json"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
_STEP_FILE_RE = re.compile(r"^step-(\d+)(?:\.rank(\d+))?\.jsonl$")


def trajectory_file_name(step: int, rank: int = 0) -> str:
    """The name of the trajectories file of ``step`` played by process ``rank``.

    Example:
        >>> trajectory_file_name(7), trajectory_file_name(7, rank=1)
        ('step-000007.jsonl', 'step-000007.rank1.jsonl')
    """
    if step < 0 or rank < 0:
        raise ValueError(f"step and rank must be >= 0, got step={step}, rank={rank}")
    suffix = f".rank{rank}" if rank else ""
    return f"step-{step:06d}{suffix}.jsonl"


def parse_trajectory_file_name(name: str) -> tuple[int, int] | None:
    """``(step, rank)`` of a name ``trajectory_file_name`` wrote, ``None`` for any other name.

    Example:
        >>> parse_trajectory_file_name("step-000007.rank1.jsonl")
        (7, 1)
        >>> parse_trajectory_file_name("step-000007.jsonl.tmp") is None
        True
    """
    m = _STEP_FILE_RE.match(name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None


def trajectory_files(
    folder: str | Path, steps: tuple[int | None, int | None] = (None, None)
) -> list[tuple[int, int, Path]]:
    """The trajectories files in ``folder`` as sorted ``(step, rank, path)``.

    Args:
        folder: A run's ``trajectories/`` folder (a missing folder has none).
        steps: Only steps in ``[lo, hi]``; ``None`` leaves that side open.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    lo, hi = steps
    found = []
    for p in folder.iterdir():
        parsed = parse_trajectory_file_name(p.name)
        if parsed is None:
            continue
        step, rank = parsed
        if (lo is None or step >= lo) and (hi is None or step <= hi):
            found.append((step, rank, p))
    return sorted(found)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunDir:
    """Paths and readers/writers of a run folder (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ paths
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def run_info_path(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def trajectories_dir(self) -> Path:
        return self.path / "trajectories"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def plot_path(self) -> Path:
        return self.path / "reward_curve.png"

    def exists(self) -> bool:
        """Whether this folder already holds a run (a config was written)."""
        return self.config_path.is_file()

    def mkdir(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ writing
    def write_run_info(self, info: Mapping[str, Any]) -> None:
        self.mkdir()
        _atomic_write(self.run_info_path, json.dumps(dict(info), indent=2, default=str))

    def read_run_info(self) -> dict[str, Any]:
        if not self.run_info_path.is_file():
            raise FileNotFoundError(f"{self.path} is not an envkit run folder (no run.json)")
        return json.loads(self.run_info_path.read_text(encoding="utf-8"))

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        """Appends one row to metrics.jsonl (non-finite floats become null)."""
        self.mkdir()
        line = json.dumps({k: _clean(v) for k, v in row.items()}, default=str)
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl (a torn last line from a killed run is skipped)."""
        if not self.metrics_path.is_file():
            return []
        rows = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def trajectories_path(self, step: int, rank: int = 0) -> Path:
        """Where ``write_trajectories`` puts ``step``'s groups of process ``rank``."""
        return self.trajectories_dir / trajectory_file_name(step, rank)

    def trajectory_files(
        self, steps: tuple[int | None, int | None] = (None, None)
    ) -> list[tuple[int, int, Path]]:
        """This run's trajectories files, sorted ``(step, rank, path)`` (``trajectory_files``)."""
        return trajectory_files(self.trajectories_dir, steps)

    def write_trajectories(
        self, step: int, groups: Sequence[TrajectoryGroup], rank: int = 0
    ) -> Path:
        path = self.trajectories_path(step, rank)
        write_jsonl(path, groups)
        return path

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (those with the envkit marker), oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for p in self.checkpoints_dir.iterdir():
            m = _CKPT_RE.match(p.name)
            if m and (p / COMPLETE_MARKER).is_file():
                found.append((int(m.group(1)), p))
        return sorted(found)

    def last_checkpoint(self) -> tuple[int, Path] | None:
        """The newest complete checkpoint, or ``None``."""
        found = self.checkpoints()
        return found[-1] if found else None

    def mark_complete(self, checkpoint: Path, info: Mapping[str, Any]) -> None:
        """Marks a checkpoint folder as fully written (written last, atomically)."""
        _atomic_write(checkpoint / COMPLETE_MARKER, json.dumps(dict(info), indent=2))

    def rewind(self, step: int) -> None:
        """Forgets everything after ``step``: metrics rows, trajectory files, partial checkpoints.

        Called before resuming from the checkpoint of ``step``, so the redone steps are written
        once.
        """
        rows = [r for r in self.read_metrics() if int(r.get("step", 0)) <= step]
        if self.metrics_path.exists():
            _atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        for _, _, p in self.trajectory_files((step + 1, None)):
            p.unlink()
        if self.checkpoints_dir.is_dir():
            for p in self.checkpoints_dir.iterdir():
                m = _CKPT_RE.match(p.name)
                if m and (int(m.group(1)) > step or not (p / COMPLETE_MARKER).is_file()):
                    shutil.rmtree(p, ignore_errors=True)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
