"""Agreement between a judge and a verifiable reward: correlations, pairwise accuracy, ties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from envkit.rewards import agreement, kendall_tau, spearman_rho


@pytest.mark.parametrize(
    ("x", "y", "rho"),
    [
        ([1, 2, 3, 4], [10, 20, 30, 40], 1.0),
        ([1, 2, 3, 4], [4, 3, 2, 1], -1.0),
        ([1, 2, 3], [1, 3, 2], 0.5),
        ([0.9, 0.1, 0.5], [1, 0, 0], math.sqrt(3) / 2),  # ties: average ranks
        ([1, 1, 1], [1, 2, 3], None),
        ([1], [1], None),
    ],
)
def test_spearman(x, y, rho) -> None:
    got = spearman_rho(x, y)
    assert got == pytest.approx(rho) if rho is not None else got is None


@pytest.mark.parametrize(
    ("x", "y", "tau"),
    [
        ([1, 2, 3, 4], [1, 3, 2, 4], 4 / 6),
        ([1, 2, 3], [3, 2, 1], -1.0),
        # tau-b with ties: nc=2, nd=0, ties only in y: 1 -> 2 / sqrt(3 * 2)
        ([1, 2, 3], [0, 1, 1], 2 / math.sqrt(6)),
        ([2, 2], [1, 3], None),
    ],
)
def test_kendall(x, y, tau) -> None:
    got = kendall_tau(x, y)
    assert got == pytest.approx(tau) if tau is not None else got is None


def test_spearman_without_ties_equals_pearson_of_ranks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.normal(size=7), rng.normal(size=7)
        rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
        assert spearman_rho(list(x), list(y)) == pytest.approx(np.corrcoef(rx, ry)[0, 1])


def test_kendall_without_ties_is_pair_balance() -> None:
    rng = np.random.default_rng(1)
    x, y = list(rng.normal(size=8)), list(rng.normal(size=8))
    signs = [np.sign((x[i] - x[j]) * (y[i] - y[j])) for i, j in itertools.combinations(range(8), 2)]
    assert kendall_tau(x, y) == pytest.approx(sum(signs) / len(signs))


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        spearman_rho([1, 2], [1])
    with pytest.raises(ValueError, match="2 judge groups but 1 reference"):
        agreement([[1.0], [1.0]], [[1.0]])
    with pytest.raises(ValueError, match="group 0: 2 judge scores but 1"):
        agreement([[1.0, 0.0]], [[1.0]])


def test_agreement_report() -> None:
    judge = [
        [0.9, 0.2, 0.6, 0.1],  # perfect order
        [0.5, 0.5, 0.1],  # a tie on a pair the reference orders: half credit
        [0.3, 0.8],  # wrong order
        [0.4, None, 0.2],  # judge unknown for one
        [None, None],  # judge error
        [0.7, 0.7],  # reference ties everywhere
    ]
    reference = [
        [1.0, 0.0, 0.5, 0.0],
        [1.0, 0.0, 0.0],
        [1.0, 0.0],
        [1.0, 1.0, 0.0],
        [1.0, 0.0],
        [1.0, 1.0],
    ]
    r = agreement(judge, reference)
    assert r.groups == 6 and r.groups_compared == 5  # the judge-error group has < 2 known
    # pairs the reference orders: g0 5 (all agree), g1 2 (1 agrees, 1 tie), g2 1 (wrong),
    # g3 1 (agrees)
    assert r.pairs == 9
    assert r.pairwise_accuracy == pytest.approx((5 + 1.5 + 0 + 1) / 9)
    assert r.judge_unknown == 3
    assert r.zero_variance_reference == pytest.approx(1 / 6)  # g5 (all 6 groups have >= 2 known)
    assert r.zero_variance_judge == pytest.approx(1 / 5)  # g5, out of groups with >= 2 known
    by_index = {g.index: g for g in r.per_group}
    assert by_index[2].spearman == -1.0 and by_index[5].spearman is None
    assert by_index[0].kendall == pytest.approx(5 / math.sqrt(5 * 6))  # tau-b: one tie in y
    assert r.spearman_mean == pytest.approx(
        np.mean([g.spearman for g in r.per_group if g.spearman is not None])
    )


def test_agreement_of_nothing() -> None:
    r = agreement([], [])
    assert r.groups == 0 and r.pairwise_accuracy is None and r.spearman_mean is None
