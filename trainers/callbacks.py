"""The transformers ``TrainerCallback`` that keeps the run folder and the progress view current.

On every logged step it appends a row to ``metrics.jsonl`` (TRL's metrics plus envkit's
diagnostics), updates the live progress, warns when in-group diversity collapses, redraws the
reward curve every few steps, and runs the held-out evaluation when one is due. On every save it
marks the checkpoint folder complete (the marker is written last, so a ``kill -9`` during a save
leaves a checkpoint that ``--resume`` ignores).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from envkit.trainers.diagnostics import collapse_warning
from envkit.trainers.progress import TrainProgress
from envkit.trainers.report import plot_run
from envkit.trainers.run_dir import RunDir

__all__ = ["RunCallback"]

_PLOT_EVERY = 10
_DROP = {
    "epoch",
    "total_flos",
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
}


class RunCallback(TrainerCallback):
    """Writes metrics, progress, plots, eval rows and checkpoint markers (main process only).

    Args:
        run: The run folder.
        progress: The live progress view.
        collapse_similarity: Pairwise similarity above which a collapse warning is printed.
        evaluate: ``evaluate(step) -> metrics`` for held-out evaluation, or ``None``.
        eval_every: Evaluate every N steps (0: never).
        elapsed_offset: Seconds already spent before a resume (so time keeps adding up).
    """

    def __init__(
        self,
        run: RunDir,
        progress: TrainProgress,
        *,
        collapse_similarity: float,
        evaluate: Callable[[int], dict[str, float]] | None = None,
        eval_every: int = 0,
        elapsed_offset: float = 0.0,
    ) -> None:
        self.run = run
        self.progress = progress
        self.collapse_similarity = collapse_similarity
        self.evaluate = evaluate
        self.eval_every = eval_every
        self.elapsed_offset = elapsed_offset
        self._start = time.perf_counter()
        self._last_step_end = self._start
        self._step_s = math.nan
        self._collapsed_since: int | None = None

    def _elapsed(self) -> float:
        return self.elapsed_offset + time.perf_counter() - self._start

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.perf_counter()
        self._step_s = now - self._last_step_end
        self._last_step_end = now

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        step = int(state.global_step)
        row: dict[str, Any] = {"kind": "train", "step": step}
        row.update({k: v for k, v in logs.items() if k not in _DROP})
        row["time/step_s"] = self._step_s
        row["time/elapsed_s"] = self._elapsed()
        self.run.append_metrics(row)
        self.progress.update(step, row)
        warning = collapse_warning(row, self.collapse_similarity)
        if warning and self._collapsed_since is None:
            self._collapsed_since = step
            self.progress.print(f"[yellow]warning[/yellow] step {step}: {warning}")
        elif not warning:
            self._collapsed_since = None
        if step % _PLOT_EVERY == 0:
            self._plot()
        if self.evaluate is not None and self.eval_every and step % self.eval_every == 0:
            self.eval_row(step)

    def eval_row(self, step: int) -> dict[str, Any]:
        """Runs the held-out evaluation now and logs it as an ``eval`` row."""
        assert self.evaluate is not None
        t = time.perf_counter()
        metrics = self.evaluate(step)
        spent = time.perf_counter() - t  # evaluation time is not training time
        self._start += spent
        self._last_step_end += spent
        row = {"kind": "eval", "step": step, **metrics}
        self.run.append_metrics(row)
        self.progress.update(step, row, echo=False)
        value = metrics.get("eval/reward_mean")
        if isinstance(value, float):
            self.progress.print(f"held-out reward at step {step}: {value:.3f}")
        return row

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        step = int(state.global_step)
        checkpoint = Path(args.output_dir) / f"checkpoint-{step}"
        if checkpoint.is_dir():
            self.run.mark_complete(
                checkpoint, {"step": step, "data_position": step, "elapsed_s": self._elapsed()}
            )

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._plot()

    def _plot(self) -> None:
        try:
            plot_run(self.run.path)
        except Exception as e:  # a plotting problem must never stop training
            self.progress.print(f"[yellow]warning[/yellow] could not draw the reward curve: {e}")
