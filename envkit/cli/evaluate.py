"""``envkit eval``: run a policy on an env and report reward, pass@k, outcomes and timing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from envkit.metrics import RolloutSummary, summarize
from envkit.rollout import collect
from envkit.types import TrajectoryGroup, write_jsonl

__all__ = ["LOCAL_API_KEY", "judge_groups", "print_summary", "resolve_api_key", "run_eval"]

LOCAL_API_KEY = "sk-envkit-local"
"""The key sent to a server at ``--api-base`` when none is given: litellm's OpenAI client refuses
to send a request without one, and local servers (vLLM, llama.cpp, Ollama) accept any."""


def resolve_api_key(model: str, api_base: str | None, api_key: str | None) -> str | None:
    """The API key to call ``model`` with.

    ``api_key`` when given; else ``None`` (litellm reads the provider's environment variable, such
    as ``OPENAI_API_KEY``) unless the model is served at ``api_base`` and litellm finds no key for
    it in the environment: then ``LOCAL_API_KEY``.

    Example:
        >>> resolve_api_key("openai/m", "http://127.0.0.1:8000/v1", "sk-mine")
        'sk-mine'
        >>> resolve_api_key("openai/m", None, None) is None
        True
    """
    if api_key:
        return api_key
    if not api_base:
        return None
    from envkit._litellm import import_litellm

    litellm = import_litellm()
    try:
        found = litellm.validate_environment(model=model, api_base=api_base)
    except Exception:  # a model string litellm cannot map: a placeholder cannot hurt
        return LOCAL_API_KEY
    return None if found.get("keys_in_environment") else LOCAL_API_KEY


def print_summary(
    summary: RolloutSummary,
    console: Console,
    title: str,
    runtime: dict[str, str] | None = None,
) -> None:
    """Prints a ``RolloutSummary`` as a table (with the device/dtype a local model ran on)."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    table.add_row("episodes", str(summary.episodes))
    table.add_row("groups", str(summary.groups))
    table.add_row("mean reward", fmt(summary.mean_reward))
    table.add_row("reward std", fmt(summary.std_reward))
    for k, v in summary.pass_at.items():
        table.add_row(f"pass@{k}", fmt(v))
    table.add_row("zero-variance groups", fmt(summary.zero_variance_groups))
    for outcome, n in sorted(summary.outcomes.items()):
        table.add_row(f"outcome {outcome}", str(n))
    table.add_row("mean turns", f"{summary.mean_turns:.2f}")
    table.add_row("mean episode s", f"{summary.mean_episode_s:.3f}")
    if summary.wall_s is not None:
        table.add_row("wall s", f"{summary.wall_s:.2f}")
    for key, value in (runtime or {}).items():
        table.add_row(key, value)
    console.print(table)


def run_eval(
    *,
    env_id: str,
    model: str,
    num_tasks: int,
    group_size: int,
    concurrency: int,
    seed: int,
    env_kwargs: dict[str, Any],
    out: Path | None,
    api_base: str | None,
    api_key: str | None,
    temperature: float,
    max_tokens: int,
    episode_timeout: float | None,
    pass_threshold: float,
    judge: str | None,
    judge_api_base: str | None,
    judge_api_key: str | None,
    adapters: list[Path],
    console: Console,
    device: str = "auto",
) -> dict[str, list[TrajectoryGroup]]:
    """Evaluates ``model`` (and each adapter) on ``num_tasks`` seeds; returns groups per policy.

    ``device`` places a local model (``auto``: CUDA when available); an API model given a device
    other than ``auto`` is an error.

    API keys: see ``resolve_api_key``; the judge uses ``api_key`` when it has no key of its own
    and is served at the same ``api_base``.
    """
    from envkit.policies import load_policy
    from envkit.policies.loading import is_local_spec

    seeds = list(range(seed, seed + num_tasks))
    local = is_local_spec(model)
    if not local and device != "auto":
        raise ValueError(
            f"--device {device} is for local models; {model!r} is an API model (litellm). Drop "
            "--device, or give a local model (a directory, hf:PATH, smollm2-135m)"
        )
    if local:
        from envkit.devices import resolve_device

        try:
            resolve_device(device)
        except RuntimeError as e:  # no such CUDA device: a usage error, said before loading
            raise ValueError(str(e)) from None
    if adapters:
        return _eval_adapters(
            env_id=env_id,
            model=model,
            adapters=adapters,
            seeds=seeds,
            group_size=group_size,
            concurrency=concurrency,
            env_kwargs=env_kwargs,
            temperature=temperature,
            max_tokens=max_tokens,
            episode_timeout=episode_timeout,
            pass_threshold=pass_threshold,
            out=out,
            console=console,
            device=device,
        )
    policy_kwargs: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
    if local:
        policy_kwargs["device"] = device
    if api_base:
        policy_kwargs["api_base"] = api_base
    key = api_key if local else resolve_api_key(model, api_base, api_key)
    if key is not None:  # a local model given a key gets load_policy's clear error
        policy_kwargs["api_key"] = key
    with console.status(f"loading {model}..."):
        policy = load_policy(model, **policy_kwargs)
    runtime = getattr(policy, "runtime", None)
    results: dict[str, list[TrajectoryGroup]] = {}
    start = time.perf_counter()
    groups = collect(
        env_id,
        policy,
        seeds=seeds,
        group_size=group_size,
        concurrency=concurrency,
        env_kwargs=env_kwargs,
        episode_timeout=episode_timeout,
        progress=True,
    )
    wall = time.perf_counter() - start
    results[model] = groups
    print_summary(
        summarize(groups, pass_threshold=pass_threshold, wall_s=wall),
        console,
        f"{env_id} · {model}",
        runtime,
    )
    if judge is not None:
        if judge_api_key is None and judge_api_base and judge_api_base == api_base:
            judge_api_key = api_key
        judge_groups(
            groups,
            judge,
            api_base=judge_api_base,
            api_key=resolve_api_key(judge, judge_api_base, judge_api_key),
            console=console,
        )
    if out is not None:
        write_jsonl(out, groups)
        console.print(f"wrote {len(groups)} groups to {out}")
    return results


def judge_groups(
    groups: list[TrajectoryGroup],
    judge: str,
    *,
    api_base: str | None,
    console: Console,
    api_key: str | None = None,
) -> None:
    """Scores ``groups`` with a RULER judge and prints how well it agrees with the env's reward.

    The env's own rewards stay in each trajectory's ``metrics["env_reward"]``; ``reward``
    becomes the judge's score. The judge's answers are cached on disk, so a re-run is free.
    ``api_key`` is the judge's key (``None``: litellm reads the provider's env var). A group the
    judge cannot score is reported (``judge error: ...``) and keeps rewards ``None``.
    """
    from envkit.rewards import RulerJudge, agreement, score_groups

    reference = [g.rewards for g in groups]
    for group in groups:
        for traj in group:
            traj.metrics["env_reward"] = traj.reward
    with console.status(f"judging {len(groups)} groups with {judge}..."):
        scorer = RulerJudge(judge, api_base=api_base, api_key=api_key, cache=True)
        report = score_groups(groups, scorer)
    agree = agreement([g.rewards for g in groups], reference)
    table = Table(title=f"judge {judge} vs the env's reward")
    table.add_column("metric")
    table.add_column("value", justify="right")

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    table.add_row("groups judged", str(report.groups - report.judge_errors))
    table.add_row("judge errors (groups)", str(report.judge_errors))
    table.add_row("groups compared", str(agree.groups_compared))
    table.add_row("Spearman rho (mean per group)", fmt(agree.spearman_mean))
    table.add_row("Kendall tau (mean per group)", fmt(agree.kendall_mean))
    table.add_row("pairwise accuracy", fmt(agree.pairwise_accuracy))
    table.add_row("zero-variance groups (env reward)", fmt(agree.zero_variance_reference))
    table.add_row("zero-variance groups (judge)", fmt(agree.zero_variance_judge))
    console.print(table)
    for message in report.error_messages:
        console.print(f"[yellow]judge error:[/yellow] {message}")


def _eval_adapters(
    *,
    env_id: str,
    model: str,
    adapters: list[Path],
    seeds: list[int],
    group_size: int,
    concurrency: int,
    env_kwargs: dict[str, Any],
    temperature: float,
    max_tokens: int,
    episode_timeout: float | None,
    pass_threshold: float,
    out: Path | None,
    console: Console,
    device: str = "auto",
) -> dict[str, list[TrajectoryGroup]]:
    """The base model and each LoRA adapter on the same tasks, one loaded model, one table."""
    from envkit.policies.loading import is_local_spec
    from envkit.trainers.adapters import evaluate_adapters, print_comparison

    if not is_local_spec(model):
        raise ValueError(
            "--adapter needs a local base model (smollm2-135m, tiny-random, hf:PATH), "
            f"got {model!r}"
        )
    results = evaluate_adapters(
        model,  # load_model reads the model string (envkit.model_spec)
        env_id,
        [str(a) for a in adapters],
        seeds=seeds,
        group_size=group_size,
        env_kwargs=env_kwargs,
        max_new_tokens=max_tokens,
        temperature=temperature,
        concurrency=concurrency,
        episode_timeout=episode_timeout,
        device=device,
    )
    print_comparison(results, console, pass_threshold=pass_threshold)
    from envkit.devices import resolve_device, resolve_dtype

    where = resolve_device(device)
    dtype = str(resolve_dtype("auto", where)).removeprefix("torch.")
    console.print(f"device: {where}, dtype: {dtype}")
    if out is not None:
        write_jsonl(out, [g for groups in results.values() for g in groups])
        console.print(f"wrote {sum(len(g) for g in results.values())} groups to {out}")
    return results
