"""How well a judge agrees with a verifiable reward: rank correlation per group, pairwise accuracy.

GRPO uses rewards only within a group, so agreement is measured within groups: Spearman's rho
and Kendall's tau-b per group (averaged over the groups where both are defined), the fraction
of pairs the reference orders that the judge orders the same way (a judge tie counts half), and
the fraction of groups whose rewards all tie (no learning signal).

Example:
    >>> report = agreement(judge=[[0.9, 0.1, 0.5], [0.2, 0.2]],
    ...                    reference=[[1.0, 0.0, 0.0], [1.0, 1.0]])
    >>> report.pairwise_accuracy, report.zero_variance_reference
    (1.0, 0.5)
    >>> round(report.spearman_mean, 3)
    0.866
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from pydantic import BaseModel, Field

__all__ = ["AgreementReport", "GroupAgreement", "agreement", "kendall_tau", "spearman_rho"]


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    ranks = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); ``None`` if either side is constant.

    Example:
        >>> spearman_rho([1, 2, 3], [10, 20, 30]), spearman_rho([1, 2, 3], [3, 2, 1])
        (1.0, -1.0)
        >>> spearman_rho([1, 1, 1], [1, 2, 3]) is None
        True
    """
    if len(x) != len(y):
        raise ValueError(f"spearman_rho needs equal lengths, got {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b (corrected for ties); ``None`` if either side is constant.

    Example:
        >>> kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])
        0.6666666666666666
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs equal lengths, got {len(x)} and {len(y)}")
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    if denom == 0:
        return None
    return (concordant - discordant) / denom


class GroupAgreement(BaseModel):
    """Agreement within one group (over the trajectories both rewards know)."""

    index: int
    n: int = Field(description="Trajectories with both rewards known.")
    spearman: float | None = None
    kendall: float | None = None
    pairs: int = Field(0, description="Pairs the reference orders (its values differ).")
    agreeing: float = Field(0.0, description="Of those, the pairs the judge orders the same way.")


class AgreementReport(BaseModel):
    """Agreement of a judge with a reference reward over groups (see the module doc)."""

    groups: int
    groups_compared: int = Field(description="Groups with at least 2 trajectories known to both.")
    spearman_mean: float | None = None
    kendall_mean: float | None = None
    pairwise_accuracy: float | None = Field(
        None, description="Pairs ordered alike / pairs the reference orders (judge ties: half)."
    )
    pairs: int = 0
    zero_variance_reference: float | None = Field(
        None, description="Fraction of groups whose known reference rewards all tie."
    )
    zero_variance_judge: float | None = Field(
        None, description="Fraction of groups whose known judge scores all tie."
    )
    judge_unknown: int = Field(0, description="Trajectories with a reference but no judge score.")
    per_group: list[GroupAgreement] = Field(default_factory=list)


def _zero_var(groups: Sequence[Sequence[float | None]]) -> float | None:
    flags = [len(set(k)) == 1 for g in groups if len(k := [v for v in g if v is not None]) > 1]
    return statistics.fmean(flags) if flags else None


def _mean(xs: list[float | None]) -> float | None:
    known = [x for x in xs if x is not None]
    return statistics.fmean(known) if known else None


def agreement(
    judge: Sequence[Sequence[float | None]], reference: Sequence[Sequence[float | None]]
) -> AgreementReport:
    """Compares judge scores with reference (verifiable) rewards, group by group.

    Args:
        judge: Per group, the judge's score of each trajectory (``None``: unknown).
        reference: Per group, the reference reward of the same trajectories, in the same order.

    Raises:
        ValueError: the two do not have the same number of groups and group sizes.
    """
    if len(judge) != len(reference):
        raise ValueError(f"{len(judge)} judge groups but {len(reference)} reference groups")
    per_group: list[GroupAgreement] = []
    unknown = 0
    for index, (js, rs) in enumerate(zip(judge, reference, strict=True)):
        if len(js) != len(rs):
            raise ValueError(
                f"group {index}: {len(js)} judge scores but {len(rs)} reference rewards"
            )
        unknown += sum(1 for j, r in zip(js, rs, strict=True) if j is None and r is not None)
        both = [
            (float(j), float(r))
            for j, r in zip(js, rs, strict=True)
            if j is not None and r is not None
        ]
        if len(both) < 2:
            continue
        xs, ys = [b[0] for b in both], [b[1] for b in both]
        pairs, agreeing = 0, 0.0
        for a in range(len(both)):
            for b in range(a + 1, len(both)):
                dr = ys[a] - ys[b]
                if dr == 0:
                    continue
                pairs += 1
                dj = xs[a] - xs[b]
                agreeing += 0.5 if dj == 0 else float((dj > 0) == (dr > 0))
        per_group.append(
            GroupAgreement(
                index=index,
                n=len(both),
                spearman=spearman_rho(xs, ys),
                kendall=kendall_tau(xs, ys),
                pairs=pairs,
                agreeing=agreeing,
            )
        )
    total_pairs = sum(g.pairs for g in per_group)
    return AgreementReport(
        groups=len(judge),
        groups_compared=len(per_group),
        spearman_mean=_mean([g.spearman for g in per_group]),
        kendall_mean=_mean([g.kendall for g in per_group]),
        pairwise_accuracy=sum(g.agreeing for g in per_group) / total_pairs if total_pairs else None,
        pairs=total_pairs,
        zero_variance_reference=_zero_var(reference),
        zero_variance_judge=_zero_var(judge),
        judge_unknown=unknown,
        per_group=per_group,
    )
