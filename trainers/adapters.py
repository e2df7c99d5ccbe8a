"""Evaluate several LoRA adapters of one base model side by side, in one process.

The base model is loaded once; each adapter is loaded into it with peft's multi-adapter support
(``PeftModel.load_adapter``) and activated in turn, and the base itself is evaluated with the
adapters disabled. Every policy plays the same tasks with the same sampling seed, so differences
come from the weights.

Example:
    >>> from envkit.trainers.adapters import adapter_name
    >>> adapter_name("runs/arith-1")
    'arith-1'
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envkit.types import TrajectoryGroup

__all__ = ["adapter_dir", "adapter_name", "evaluate_adapters", "print_comparison"]

BASE = "base"


def adapter_dir(path: str | Path) -> Path:
    """The peft adapter folder of ``path``: a run folder (its ``adapter/``), a checkpoint or an
    adapter folder itself.

    Raises:
        FileNotFoundError: no ``adapter_config.json`` in ``path`` or ``path/adapter``.
    """
    p = Path(path).expanduser()
    for candidate in (p, p / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"{p} is neither a peft adapter folder (adapter_config.json) nor an envkit run folder "
        "with adapter/ (a run writes it when training ends; checkpoints/checkpoint-N also work)"
    )


def adapter_name(path: str | Path) -> str:
    """A short display name for an adapter path (the run folder's name)."""
    p = Path(path).expanduser()
    if p.name in ("adapter", "") or p.name.startswith("checkpoint-"):
        parent = p.parent.parent.name if p.parent.name == "checkpoints" else p.parent.name
        return f"{parent}/{p.name}" if p.name.startswith("checkpoint-") else parent
    return p.name


def evaluate_adapters(
    model: Any,
    env: Any,
    adapters: Sequence[str | Path] | Mapping[str, str | Path],
    *,
    seeds: Sequence[int],
    group_size: int = 1,
    include_base: bool = True,
    env_kwargs: Mapping[str, Any] | None = None,
    reward: Any = None,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    concurrency: int = 64,
    episode_timeout: float | None = None,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, list[TrajectoryGroup]]:
    """Plays the same tasks with the base model and each adapter; returns groups per policy.

    Args:
        model: The base model: a name/path for ``envkit.models.load_model`` or a
            ``(model, tokenizer)`` pair (it is wrapped by peft in place).
        env: An env id or a factory returning a ``ChatEnv``.
        adapters: Adapter paths (run folders, checkpoints or adapter folders), or
            ``{name: path}``.
        seeds: Task seeds.
        group_size: Episodes per task (for pass@k).
        include_base: Also evaluate the base model (adapters disabled), first, as ``"base"``.
        env_kwargs: Keyword arguments for making the env.
        reward: ``None`` for the env's reward, else anything ``envkit.rewards.score_groups``
            takes.
        max_new_tokens: Most tokens per turn.
        temperature: Sampling temperature (0: greedy).
        top_p: Nucleus sampling mass.
        concurrency: Most episodes in flight.
        episode_timeout: Seconds per episode.
        seed: Sampling seed, the same for every policy.
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        ``{name: groups}`` in evaluation order (``"base"`` first when included).

    Raises:
        FileNotFoundError: an adapter path holds no adapter.
        ValueError: two adapters get the same name.
    """
    import torch

    from envkit.policies import HFPolicy
    from envkit.rollout import acollect
    from envkit.trainers.config import GRPOConfig
    from envkit.trainers.episodes import BackgroundLoop, derive_seed, score_groups
    from envkit.trainers.modeling import load_base_model

    named = _named(adapters)
    base, tokenizer = load_base_model(model, GRPOConfig(device=device))  # type: ignore[arg-type]
    policy = HFPolicy(
        base,
        tokenizer,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        max_batch_size=max(1, min(concurrency, len(seeds) * group_size)),
    )
    # peft refuses adapter names with "." (a run folder such as "lr-0.001"): load each under a
    # plain internal name and keep the display name for the results.
    internal = {name: f"envkit_adapter_{i}" for i, name in enumerate(named)}
    for name, path in named.items():
        policy.load_adapter(path, internal[name])
    order = ([BASE] if include_base else []) + list(named)
    loop = BackgroundLoop()
    results: dict[str, list[TrajectoryGroup]] = {}
    try:
        for name in order:
            policy.use_adapter(None if name == BASE else internal[name])
            start = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, "evaluate_adapters"))
                groups = loop.run(
                    acollect(
                        env,
                        policy,
                        seeds=list(seeds),
                        group_size=group_size,
                        concurrency=concurrency,
                        env_kwargs=dict(env_kwargs or {}) or None,
                        episode_timeout=episode_timeout,
                        progress=False,
                    )
                )
            loop.run(score_groups(groups, reward))
            for g in groups:
                g.metrics["policy"] = name
                g.metrics["wall_s"] = time.perf_counter() - start
            results[name] = groups
    finally:
        loop.close()
    return results


def _named(adapters: Sequence[str | Path] | Mapping[str, str | Path]) -> dict[str, Path]:
    if isinstance(adapters, Mapping):
        items = [(str(k), adapter_dir(v)) for k, v in adapters.items()]
    else:
        items = [(adapter_name(a), adapter_dir(a)) for a in adapters]
    named: dict[str, Path] = {}
    for name, path in items:
        if name in named or name == BASE:
            raise ValueError(
                f"two adapters are named {name!r}; pass {{name: path}} to name them apart"
            )
        named[name] = path
    return named


def print_comparison(
    results: Mapping[str, Sequence[TrajectoryGroup]],
    console: Any = None,
    *,
    pass_threshold: float = 1.0,
) -> list[dict[str, Any]]:
    """Prints one row per policy (mean reward, change vs base, pass@k, outcomes); returns rows."""
    from rich.console import Console
    from rich.table import Table

    from envkit.metrics import summarize

    console = console or Console()
    rows = []
    base_mean = None
    for name, groups in results.items():
        s = summarize(list(groups), pass_threshold=pass_threshold)
        if name == BASE:
            base_mean = s.mean_reward
        rows.append({"policy": name, "summary": s})
    ks = sorted({k for r in rows for k in r["summary"].pass_at})
    table = Table(title="adapters side by side")
    table.add_column("policy", style="bold")
    table.add_column("mean reward", justify="right")
    table.add_column("vs base", justify="right")
    for k in ks:
        table.add_column(f"pass@{k}", justify="right")
    table.add_column("episodes", justify="right")
    table.add_column("outcomes")
    for r in rows:
        s = r["summary"]
        delta = (
            f"{s.mean_reward - base_mean:+.3f}"
            if base_mean is not None and s.mean_reward is not None and r["policy"] != BASE
            else ""
        )
        table.add_row(
            r["policy"],
            "n/a" if s.mean_reward is None else f"{s.mean_reward:.3f}",
            delta,
            *[f"{s.pass_at[k]:.3f}" if k in s.pass_at else "" for k in ks],
            str(s.episodes),
            " ".join(f"{k}={v}" for k, v in sorted(s.outcomes.items())),
        )
    console.print(table)
    return rows
