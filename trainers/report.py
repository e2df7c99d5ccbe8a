"""Summaries and plots of a run folder (what ``envkit report RUN_DIR`` prints and draws).

Example:
    >>> import tempfile
    >>> from envkit.trainers.run_dir import RunDir
    >>> run = RunDir(tempfile.mkdtemp())
    >>> for s in range(1, 5):
    ...     run.append_metrics({"kind": "train", "step": s, "reward/mean": s / 4})
    >>> summarize_run(run.path)["reward_last"]
    1.0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envkit.trainers.run_dir import RunDir

__all__ = ["plot_run", "print_summary", "summarize_run"]


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, int | float) and math.isfinite(v):
            xs.append(int(r.get("step", 0)))
            ys.append(float(v))
    return xs, ys


def _window_mean(ys: Sequence[float], start: int, stop: int) -> float | None:
    part = list(ys[start:stop])
    return statistics.fmean(part) if part else None


def _env_ids(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The ``<id>`` of every ``env/<id>/reward/mean`` key (a mixture run), in first-seen order."""
    ids: dict[str, None] = {}
    for r in rows:
        for key in r:
            if key.startswith("env/") and key.endswith("/reward/mean"):
                ids[key[len("env/") : -len("/reward/mean")]] = None
    return list(ids)


def _per_env(train: Sequence[dict[str, Any]], evals: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-env figures of a mixture run: reward first/last, episodes, zero-variance groups."""
    out: dict[str, Any] = {}
    for env in _env_ids(train):
        _, rewards = _series(train, f"env/{env}/reward/mean")
        k = max(1, min(10, len(rewards) // 4)) if rewards else 1
        _, episodes = _series(train, f"env/{env}/episodes")
        _, zero = _series(train, f"env/{env}/groups/zero_variance_frac")
        _, eval_rewards = _series(evals, f"eval/env/{env}/reward_mean")
        out[env] = {
            "reward_first": _window_mean(rewards, 0, k),
            "reward_last": _window_mean(rewards, len(rewards) - k, len(rewards)),
            "episodes": int(sum(episodes)),
            "zero_variance_frac": statistics.fmean(zero) if zero else None,
            "eval_reward_last": eval_rewards[-1] if eval_rewards else None,
        }
    return out


def summarize_run(path: str | Path) -> dict[str, Any]:
    """Key figures of a run: steps, reward at the start and the end, held-out evals, timing,
    and for a mixture of envs the same per env (``envs``)."""
    run = RunDir(path)
    rows = run.read_metrics()
    train = [r for r in rows if r.get("kind", "train") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    _, rewards = _series(train, "reward/mean")
    k = max(1, min(10, len(rewards) // 4)) if rewards else 1
    _, step_s = _series(train, "time/step_s")
    last = run.last_checkpoint()
    info = run.read_run_info() if run.run_info_path.is_file() else {}
    out: dict[str, Any] = {
        "run_dir": str(run.path),
        "device": info.get("device"),
        "dtype": info.get("dtype"),
        "steps": max((int(r.get("step", 0)) for r in train), default=0),
        "reward_first": _window_mean(rewards, 0, k),
        "reward_last": _window_mean(rewards, len(rewards) - k, len(rewards)),
        "window": k,
        "step_s_mean": statistics.fmean(step_s) if step_s else None,
        "wall_s": max((float(r.get("time/elapsed_s", 0.0) or 0.0) for r in train), default=0.0),
        "evals": [
            {"step": int(r.get("step", 0)), "reward_mean": r.get("eval/reward_mean")} for r in evals
        ],
        "envs": _per_env(train, evals),
        "last_checkpoint": str(last[1]) if last else None,
        "adapter": str(run.adapter_dir)
        if (run.adapter_dir / "adapter_config.json").is_file()
        else None,
    }
    for key in (
        "entropy",
        "entropy/sampled_nll",
        "diversity/pairwise_similarity",
        "groups/zero_variance_frac",
    ):
        _, ys = _series(train, key)
        if ys:
            out[f"{key}_first"] = _window_mean(ys, 0, k)
            out[f"{key}_last"] = _window_mean(ys, len(ys) - k, len(ys))
    return out


def plot_run(path: str | Path, out: str | Path | None = None) -> Path:
    """Draws reward, entropy, diversity and length curves of a run to a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    run = RunDir(path)
    rows = run.read_metrics()
    train = [r for r in rows if r.get("kind", "train") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0][0]
    xs, ys = _series(train, "reward/mean")
    ax.plot(xs, ys, alpha=0.35, label="train reward (step)")
    if ys:
        w = max(1, min(10, len(ys) // 5))
        smooth = [statistics.fmean(ys[max(0, i - w + 1) : i + 1]) for i in range(len(ys))]
        ax.plot(xs, smooth, label=f"train reward ({w}-step mean)")
    ex, ey = _series(evals, "eval/reward_mean")
    if ex:
        ax.plot(ex, ey, "o-", label="held-out reward")
    for env in _env_ids(train):
        xs, ys = _series(train, f"env/{env}/reward/mean")
        ax.plot(xs, ys, ".-", alpha=0.6, label=f"{env} (step)")
    ax.set_title("reward")
    ax.set_xlabel("step")
    ax.legend(loc="best", fontsize=8)
    for ax, keys, title in (
        (axes[0][1], ["entropy", "entropy/sampled_nll"], "token entropy"),
        (
            axes[1][0],
            ["diversity/pairwise_similarity", "diversity/distinct_2", "groups/zero_variance_frac"],
            "in-group diversity and signal",
        ),
        (axes[1][1], ["completion/tokens_mean"], "completion tokens per episode"),
    ):
        for key in keys:
            xs, ys = _series(train, key)
            if xs:
                ax.plot(xs, ys, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle(run.path.name)
    fig.tight_layout()
    target = Path(out) if out is not None else run.plot_path
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=90)
    plt.close(fig)
    return target


def print_summary(path: str | Path, console: Any = None) -> dict[str, Any]:
    """Prints a rich table of ``summarize_run`` and returns the summary."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    s = summarize_run(path)
    table = Table(title=f"envkit run {s['run_dir']}", show_header=False)

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table.add_row("steps", fmt(s["steps"]))
    table.add_row("device, dtype", f"{fmt(s['device'])}, {fmt(s['dtype'])}")
    table.add_row(f"reward, first {s['window']} steps", fmt(s["reward_first"]))
    table.add_row(f"reward, last {s['window']} steps", fmt(s["reward_last"]))
    for key in (
        "entropy",
        "entropy/sampled_nll",
        "diversity/pairwise_similarity",
        "groups/zero_variance_frac",
    ):
        if f"{key}_first" in s:
            table.add_row(key, f"{fmt(s[f'{key}_first'])} -> {fmt(s[f'{key}_last'])}")
    for env, figures in s["envs"].items():
        table.add_row(
            f"[{env}] reward, first -> last {s['window']} steps",
            f"{fmt(figures['reward_first'])} -> {fmt(figures['reward_last'])}",
        )
        table.add_row(
            f"[{env}] episodes, zero-variance groups",
            f"{figures['episodes']}, {fmt(figures['zero_variance_frac'])}",
        )
        if figures["eval_reward_last"] is not None:
            table.add_row(f"[{env}] held-out reward, last", fmt(figures["eval_reward_last"]))
    for e in s["evals"]:
        table.add_row(f"held-out reward @ step {e['step']}", fmt(e["reward_mean"]))
    table.add_row("seconds per step", fmt(s["step_s_mean"]))
    table.add_row("wall time (s)", fmt(s["wall_s"]))
    table.add_row("last checkpoint", fmt(s["last_checkpoint"]))
    table.add_row("adapter", fmt(s["adapter"]))
    console.print(table)
    return s
