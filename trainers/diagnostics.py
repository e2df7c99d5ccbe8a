"""Per-step diagnostics of a GRPO run, computed from the step's trajectory groups.

``step_diagnostics`` returns flat ``{name: float}`` metrics: reward mean/std and per-component
means, how many groups carry no learning signal (all rewards tie, judge errors, failed episodes),
completion lengths, a sampled-token entropy estimate, and in-group diversity (distinct n-grams,
pairwise similarity) with the fraction of collapsed groups. ``collapse_warning`` turns them into a
human sentence when the policy stops exploring, the usual precursor of a stalled run.

Example:
    >>> from envkit.types import Trajectory, TrajectoryGroup
    >>> g = TrajectoryGroup(env_id="e", trajectories=[
    ...     Trajectory(env_id="e", reward=1.0), Trajectory(env_id="e", reward=1.0)])
    >>> step_diagnostics([g])["groups/zero_variance_frac"]
    1.0
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence

from envkit.metrics import Reduction
from envkit.types import Trajectory, TrajectoryGroup

__all__ = [
    "STEP_DIAGNOSTICS",
    "collapse_warning",
    "distinct_ngrams",
    "group_signal",
    "hacking_flagged",
    "pairwise_similarity",
    "step_diagnostics",
]


STEP_DIAGNOSTICS: dict[str, Reduction] = {
    "reward/mean": "mean",
    "reward/std": "mean",
    "reward/known_frac": "mean",
    "reward/*": "mean",  # per-component means of a Rubric
    "groups/zero_variance_frac": "mean",
    "groups/judge_error": "sum",
    "groups/with_signal_frac": "mean",
    "episodes/failed": "sum",
    "episodes/truncated_frac": "mean",
    "completion/tokens_mean": "mean",
    "completion/tokens_max": "max",
    "completion/turns_mean": "mean",
    "completion/cut_by_length_frac": "mean",
    "entropy/sampled_nll": "mean",
    "diversity/distinct_2": "mean",
    "diversity/pairwise_similarity": "mean",
    "diversity/collapsed_groups_frac": "mean",
    "judge/hacking_flagged_frac": "mean",
}
"""The metrics of ``step_diagnostics`` and how a multi-process run merges each
(``envkit.metrics.merge_metrics``)."""


def group_signal(group: TrajectoryGroup) -> str:
    """Why a group does or does not teach anything: ``ok``, ``judge_error``, ``zero_variance``,
    or ``too_few`` (fewer than two episodes with a known reward)."""
    if group.outcome == "judge_error":
        return "judge_error"
    known = [r for r in group.rewards if r is not None]
    if len(known) < 2:
        return "too_few"
    if max(known) - min(known) <= 1e-9:
        return "zero_variance"
    return "ok"


def _ngrams(tokens: Sequence[int | str], n: int) -> list[tuple[int | str, ...]]:
    if len(tokens) < n:
        return [tuple(tokens)] if tokens else []
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_ngrams(samples: Sequence[Sequence[int | str]], n: int = 2) -> float:
    """Unique n-grams over all n-grams of the samples (1.0: nothing repeats; low: collapse).

    Example:
        >>> distinct_ngrams([[1, 2, 3], [1, 2, 3]])
        0.5
        >>> distinct_ngrams([[1, 2], [3, 4]])
        1.0
    """
    grams = [g for s in samples for g in _ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def pairwise_similarity(samples: Sequence[Sequence[int | str]], n: int = 2) -> float:
    """Mean Jaccard similarity of the n-gram sets of every pair of samples (1.0: identical).

    Example:
        >>> pairwise_similarity([[1, 2, 3], [1, 2, 3], [1, 2, 3]])
        1.0
        >>> pairwise_similarity([[1, 2], [3, 4]])
        0.0
    """
    sets = [set(_ngrams(s, n)) for s in samples]
    pairs = list(itertools.combinations(sets, 2))
    if not pairs:
        return 0.0
    total = 0.0
    for a, b in pairs:
        union = a | b
        total += len(a & b) / len(union) if union else 1.0
    return total / len(pairs)


def _policy_tokens(traj: Trajectory) -> list[int | str]:
    """The sampled token ids of all turns (or the assistant text's words without token data)."""
    out: list[int | str] = []
    for c in traj.completions:
        if c.token_ids is not None:
            out.extend(c.token_ids)
        else:
            out.extend((c.message.content or "").split())
    return out


def hacking_flagged(traj: Trajectory) -> bool:
    """Whether a judge flagged this trajectory as reward hacking.

    ``envkit.rewards.RulerJudge`` writes ``<judge name>_reward_hacking: true`` into the
    trajectory's metrics.
    """
    return any(k.endswith("reward_hacking") and v is True for k, v in traj.metrics.items())


def _mean(xs: Sequence[float]) -> float:
    return float(statistics.fmean(xs)) if xs else math.nan


def step_diagnostics(
    groups: Sequence[TrajectoryGroup],
    *,
    collapse_similarity: float = 0.9,
) -> dict[str, float]:
    """Metrics of one step's groups (see the module doc for the names)."""
    trajs = [t for g in groups for t in g]
    rewards = [t.reward for t in trajs if t.reward is not None]
    out: dict[str, float] = {
        "reward/mean": _mean(rewards),
        "reward/std": float(statistics.pstdev(rewards)) if len(rewards) > 1 else 0.0,
        "reward/known_frac": len(rewards) / len(trajs) if trajs else math.nan,
    }
    components: dict[str, list[float]] = {}
    for t in trajs:
        for name, value in t.reward_breakdown.items():
            if value is not None:
                components.setdefault(name, []).append(value)
    for name, values in sorted(components.items()):
        out[f"reward/{name}"] = _mean(values)

    signals = Counter(group_signal(g) for g in groups)
    n = len(groups) or 1
    out["groups/zero_variance_frac"] = signals["zero_variance"] / n
    out["groups/judge_error"] = float(signals["judge_error"])
    out["groups/with_signal_frac"] = signals["ok"] / n
    outcomes = Counter(t.outcome for t in trajs)
    out["episodes/failed"] = float(
        sum(v for k, v in outcomes.items() if k not in ("ok", "truncated"))
    )
    out["episodes/truncated_frac"] = outcomes["truncated"] / len(trajs) if trajs else math.nan

    lengths = [len(_policy_tokens(t)) for t in trajs if t.completions]
    out["completion/tokens_mean"] = _mean(lengths)
    out["completion/tokens_max"] = float(max(lengths)) if lengths else math.nan
    out["completion/turns_mean"] = _mean([t.num_turns for t in trajs])
    stopped = [c.finish_reason == "length" for t in trajs for c in t.completions]
    out["completion/cut_by_length_frac"] = _mean([float(s) for s in stopped])

    nll = [-lp for t in trajs for c in t.completions for lp in (c.logprobs or [])]
    out["entropy/sampled_nll"] = _mean(nll)

    distinct, similar = [], []
    for g in groups:
        samples = [_policy_tokens(t) for t in g if t.completions]
        if len(samples) < 2:
            continue
        distinct.append(distinct_ngrams(samples))
        similar.append(pairwise_similarity(samples))
    out["diversity/distinct_2"] = _mean(distinct)
    out["diversity/pairwise_similarity"] = _mean(similar)
    out["diversity/collapsed_groups_frac"] = (
        _mean([float(s >= collapse_similarity) for s in similar]) if similar else math.nan
    )
    flagged = [hacking_flagged(t) for t in trajs]
    if any(flagged):
        out["judge/hacking_flagged_frac"] = sum(flagged) / len(flagged)
    return out


def collapse_warning(metrics: Mapping[str, float], threshold: float) -> str | None:
    """A warning sentence when in-group diversity collapsed, else ``None``.

    Example:
        >>> collapse_warning({"diversity/pairwise_similarity": 0.97,
        ...                   "diversity/distinct_2": 0.1}, 0.9) is not None
        True
    """
    sim = metrics.get("diversity/pairwise_similarity", math.nan)
    if not (isinstance(sim, float | int) and sim >= threshold):
        return None
    distinct = metrics.get("diversity/distinct_2", math.nan)
    return (
        f"diversity collapse: completions of the same task are {sim:.0%} alike (distinct-2 "
        f"{distinct:.2f}); the policy has stopped exploring. If the reward is not yet high, "
        "raise temperature, lower learning_rate or add beta>0."
    )
