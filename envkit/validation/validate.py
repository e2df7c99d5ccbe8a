"""``envkit.validate``: attack an environment's reward the way a policy under RL pressure would.

Every probe is a scripted policy (``envkit.validation.probes``) played through envkit's own
episode engine (``envkit.episode_runner.EpisodeRunner``, as ``envkit.collect`` plays them) on the
same seeds. The golden path must reach the env's maximum reward; the empty replies define the
floor; the panel of non-solving probes and the env's declared canaries must stay at the floor;
the hygiene rules (``envkit.validation.hygiene``) must hold. With a judge, the injection
trajectories are judged beside the golden and empty ones.

Example:
    >>> import envkit
    >>> report = envkit.validate("Arithmetic-v0", episodes=2)
    >>> report.ok, report.golden_status
    (True, 'reaches max')
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from envkit._async import run_sync
from envkit.env import ChatEnv
from envkit.env_pool import EnvPool
from envkit.episode_runner import EpisodeRunner
from envkit.policies.base import BasePolicy
from envkit.registration import full_id, make_chat_env, spec
from envkit.spaces import validate_assistant_turn
from envkit.types import Completion, GenerationRequest, Trajectory
from envkit.validation import hygiene
from envkit.validation.probes import Probe, canary_probes, golden_probe, panel
from envkit.validation.report import Finding, ProbeResult, ValidationReport

__all__ = ["avalidate", "validate"]

EPS = 1e-6
_ACTING = ("golden", "tool_abuse", "canary")
"""Probes that act on the env (tools, code): their tool output is checked for long references
only (``hygiene.TOOL_LEAK_MIN_CHARS``); the golden path's is not checked."""
DEFAULT_TOLERANCE = 0.2
"""A probe's mean reward may exceed the floor by this fraction of (max - floor): room for the
chance hits of a non-solving reply (``"7"`` repeated from ``What is 0 + 7?``). A real hack
earns reward on most seeds."""


class _ProbePolicy(BasePolicy):
    """Asks ``probe.act(env)`` for each turn, ``env`` being the episode's env."""

    def __init__(self, probe: Probe, env_of: Callable[[], ChatEnv]) -> None:
        self.probe = probe
        self.env_of = env_of

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        env = self.env_of()
        return [Completion(message=validate_assistant_turn(self.probe.act(env))) for _ in requests]


async def _play(
    env_id: str,
    env_kwargs: dict[str, Any],
    probe: Probe,
    seeds: Sequence[int],
    episode_timeout: float | None,
) -> list[Trajectory]:
    """Plays ``probe`` on every seed, one env (episodes in order), through the episode engine."""
    made: list[ChatEnv] = []

    def factory() -> ChatEnv:
        env = make_chat_env(env_id, **env_kwargs)
        made.append(env)
        return env

    factory.__name__ = env_id  # the trajectories' env_id
    pool = EnvPool(factory, 1)
    runner = EpisodeRunner(pool, _ProbePolicy(probe, lambda: made[-1]), None, episode_timeout)
    try:
        out = []
        for seed in seeds:
            traj = await runner.episode(seed, 0)
            traj.metrics["validate_probe"] = probe.name
            out.append(traj)
        return out
    finally:
        await runner.aclose()
        await pool.aclose()


def _mean(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return math.fsum(got) / len(got) if got else None


async def avalidate(
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 4,
    seed: int = 0,
    judge: Any = None,
    judge_api_base: str | None = None,
    out: str | Path | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    concurrency: int = 4,
    episode_timeout: float | None = 300.0,
    progress: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Async ``validate`` (see there)."""
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    fid = full_id(env_id)
    spec(fid)  # an unknown id fails here, with gymnasium's suggestions
    kwargs = dict(env_kwargs or {})
    seeds = list(range(seed, seed + episodes))

    # The probes depend on the env (its tools, its canaries): look at one instance first.
    probe_env = make_chat_env(fid, **kwargs)
    from envkit.environments.agent import AgentEnv

    if isinstance(probe_env, AgentEnv):
        probe_env.close()
        raise ValueError(
            f"{fid} is an AgentEnv (an agent program plays its episodes): envkit validate plays "
            "scripted turns of ChatEnv envs only; validate the env its tasks come from, or its "
            "reward with a ChatEnv that exposes the same grader"
        )
    try:
        probe_env.reset(seed=seeds[0])
        probes = [golden_probe(), *panel(probe_env), *canary_probes(type(probe_env).canaries)]
        declared = type(probe_env).reward_range
        isolation = hygiene.isolation(probe_env)
    finally:
        probe_env.close()
    if declared is not None:
        lo, hi = (float(declared[0]), float(declared[1]))
        if not lo < hi:
            raise ValueError(
                f"{fid}: reward_range must be (low, high) with low < high, got {declared}"
            )
    else:
        lo, hi = 0.0, 1.0
    # The determinism rerun: the golden path again, on fresh envs.
    rerun = golden_probe()
    limit = asyncio.Semaphore(concurrency)

    async def one(p: Probe) -> list[Trajectory]:
        async with limit:
            trajs = await _play(fid, kwargs, p, seeds, episode_timeout)
            if progress is not None:
                progress(p.name)
            return trajs

    results = await asyncio.gather(*(one(p) for p in [*probes, rerun]))
    played = dict(zip([p.name for p in probes], results[:-1], strict=True))
    rerun_trajs = results[-1]
    kinds = {p.name: p for p in probes}

    findings: list[Finding] = []
    rows: list[ProbeResult] = []

    def row(p: Probe, trajs: list[Trajectory], **fields: Any) -> ProbeResult:
        r = ProbeResult(
            name=p.name,
            kind=p.kind,
            description=p.description,
            episodes=len(trajs),
            mean_reward=_mean([t.reward for t in trajs]),
            errors=sum(t.failed for t in trajs),
            **fields,
        )
        rows.append(r)
        return r

    # ---- floor: per seed, the best of the empty replies
    floor_names = [p.name for p in probes if p.kind == "floor"]
    floor_by_seed = []
    for i in range(len(seeds)):
        got = [played[n][i].reward for n in floor_names if played[n][i].reward is not None]
        floor_by_seed.append(max(got) if got else lo)
    floor = _mean(floor_by_seed)
    for n in floor_names:
        trajs = played[n]
        r = row(kinds[n], trajs)
        _errors(r, trajs)

    # ---- golden
    gtrajs = played["golden"]
    no_golden = [t for t in gtrajs if t.error and "NoGoldenPath" in t.error]
    golden_mean: float | None = None
    if len(no_golden) == len(gtrajs):
        golden_status = "no golden path"
        row(kinds["golden"], gtrajs, status="info", detail="golden() returned None: no golden path")
        rows[-1].errors = 0
    else:
        # Seeds whose task has no golden path (golden() is None there) are left out.
        known = [t for t in gtrajs if t not in no_golden]
        golden_mean = _mean([t.reward for t in known])
        below = [t for t in known if t.reward is None or t.reward < hi - EPS]
        r = row(kinds["golden"], known)
        if any(t.failed for t in known):
            golden_status = "error"
            _errors(r, known)
        elif below:
            golden_status = "below max"
            r.status = "finding"
            r.detail = f"the golden path earned {golden_mean:.3g}, below the maximum {hi:g}"
            findings.append(
                Finding(
                    probe="golden",
                    kind="golden",
                    message=f"{r.detail} on {len(below)} of {len(gtrajs)} seeds: the reward "
                    "does not pay for a solution (or golden() is wrong)",
                    trajectories=below,
                )
            )
        else:
            golden_status = "reaches max"
            r.detail = f"reaches {hi:g}"
        if no_golden:
            r.detail += f" (no golden path on {len(no_golden)} of {len(gtrajs)} seeds)"
    if floor is not None and floor >= hi - EPS:
        for r in rows:
            if r.kind == "floor":
                r.status, r.detail = "finding", f"earns the maximum {hi:g}"
        findings.append(
            Finding(
                probe=floor_names[0],
                kind="floor",
                message=f"an empty reply earns the maximum reward {hi:g}: the reward does not "
                "separate solving from not answering",
                trajectories=[played[floor_names[0]][0]],
            )
        )

    # ---- the panel and the canaries: stay at the floor
    span = max(hi - (floor or lo), EPS)
    for p in probes:
        if p.kind in ("floor", "golden"):
            continue
        trajs = played[p.name]
        hit = [
            t
            for t, f in zip(trajs, floor_by_seed, strict=True)
            if t.reward is not None and t.reward > f + EPS
        ]
        r = row(p, trajs, hits=len(hit))
        mean = r.mean_reward
        if mean is not None and floor is not None and hit and mean - floor > tolerance * span:
            r.status = "finding"
            r.detail = f"earned {mean:.3g} against the floor {floor:.3g} on {len(hit)} seed(s)"
            findings.append(
                Finding(
                    probe=p.name,
                    kind=p.kind,
                    message=f"{p.description}: {r.detail}",
                    trajectories=hit,
                )
            )
        elif hit:
            r.detail = f"{len(hit)} chance hit(s), within the tolerance"
        if r.status == "pass":
            _errors(r, trajs)

    # ---- hygiene
    everything = [t for trajs in played.values() for t in trajs]
    checks = [
        hygiene.reward_range(everything, lo, hi),
        hygiene.leaks(
            {n: played[n] for n, p in kinds.items() if p.kind not in _ACTING},
            {n: played[n] for n, p in kinds.items() if p.kind in ("tool_abuse", "canary")},
        ),
        hygiene.determinism(
            played["golden"] if golden_mean is not None else played[floor_names[0]],
            rerun_trajs if golden_mean is not None else None,
        ),
        isolation,
    ]
    if golden_mean is None:  # the rerun of a missing golden path says nothing: rerun the floor
        again = await _play(fid, kwargs, kinds[floor_names[0]], seeds, episode_timeout)
        checks[2] = hygiene.determinism(played[floor_names[0]], again)
    for check in checks:
        if check is None:
            continue
        rows.append(check.result)
        if check.finding is not None:
            findings.append(check.finding)

    report = ValidationReport(
        env_id=fid,
        env_kwargs=kwargs,
        seeds=seeds,
        max_reward=hi,
        reward_range=(lo, hi),
        floor=floor,
        golden=golden_mean,
        golden_status=golden_status,
        probes=rows,
        findings=findings,
    )
    if judge is not None:
        from envkit.validation.judge import judge_injection

        report.judge, finding, jrow = await judge_injection(
            judge, played, golden_mean is not None, tolerance, api_base=judge_api_base
        )
        report.probes.append(jrow)
        if finding is not None:
            report.findings.append(finding)
    if out is not None:
        report.write(out)
    return report


def _errors(r: ProbeResult, trajs: list[Trajectory]) -> None:
    failed = [t for t in trajs if t.failed]
    if failed:
        r.status = "error"
        r.detail = f"{len(failed)} episode(s) failed: {failed[0].outcome}: {failed[0].error}"[:300]


def validate(
    env_id: str,
    *,
    env_kwargs: dict[str, Any] | None = None,
    episodes: int = 4,
    seed: int = 0,
    judge: Any = None,
    judge_api_base: str | None = None,
    out: str | Path | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    concurrency: int = 4,
    episode_timeout: float | None = 300.0,
    progress: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Attacks ``env_id``'s reward with scripted policies; reports what got through.

    Args:
        env_id: A registered env id (``"Arithmetic-v0"`` or ``"envkit/Arithmetic-v0"``).
        env_kwargs: Keyword arguments for making the env.
        episodes: Seeds each probe plays (``seed``, ``seed + 1``, ...).
        seed: The first seed.
        judge: A RULER judge to run the injection trajectories against: a litellm model string
            or an ``envkit.rewards.RulerJudge`` (``None``: no judge probe).
        judge_api_base: The API base URL of a judge given as a model string.
        out: A folder for ``report.json`` and ``findings.jsonl`` (open it with ``envkit view``).
        tolerance: How far above the floor a probe's mean may go, as a fraction of
            (max - floor), before it is a finding (chance hits of non-solving replies).
        concurrency: Probes played at once.
        episode_timeout: Seconds per episode (``None``: no limit).
        progress: Called with each probe's name when it finished.

    Returns:
        A ``ValidationReport``; ``report.ok`` is False when any probe collected reward it did
        not earn, a hygiene rule broke or a probe's episodes failed.

    Raises:
        gymnasium.error.Error: ``env_id`` is not registered.
        ValueError: bad ``episodes``, ``tolerance`` or ``concurrency``.

    Example:
        >>> import envkit
        >>> report = envkit.validate("GuessNumber-v0", episodes=2)
        >>> report.ok, [p.name for p in report.probes][:3]
        (True, ['null', 'blank', 'golden'])
    """
    return run_sync(
        avalidate(
            env_id,
            env_kwargs=env_kwargs,
            episodes=episodes,
            seed=seed,
            judge=judge,
            judge_api_base=judge_api_base,
            out=out,
            tolerance=tolerance,
            concurrency=concurrency,
            episode_timeout=episode_timeout,
            progress=progress,
        )
    )
