"""Layer-wise sparsity allocations against hand-computed values (docs/method.md §4)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from lit_activation.sparsity import (
    activation_sparsity,
    check_nm,
    outlier_ratio,
    owl_from_ratios,
    owl_sparsity,
    uniform_sparsity,
    weighted_mean,
)


def paper_formula(counts, s, alpha=2.0, beta=0.2):
    """The paper's formula written out with the standard library, layer i = 1..L."""
    mean, std = statistics.fmean(counts), statistics.pstdev(counts)
    n_prime = [1 / (1 + math.exp(-((c - mean) / std + alpha / i))) for i, c in enumerate(counts, start=1)]
    total = sum(n_prime)
    return [s + beta * s * (1 - p * len(counts) / total) for p in n_prime]


def test_uniform():
    assert uniform_sparsity(3, 0.5) == [0.5, 0.5, 0.5]


def test_activation_matches_hand_computation_and_keeps_the_mean():
    counts = [100, 400, 900, 800, 500, 300, 200, 150]
    got = activation_sparsity(counts, 0.5)
    assert got == pytest.approx(paper_formula(counts, 0.5), abs=1e-12)
    assert statistics.fmean(got) == pytest.approx(0.5, abs=1e-12)
    assert weighted_mean(got, [10] * len(got)) == pytest.approx(0.5, abs=1e-12)
    # more activated parameters -> less pruning (among layers past the α/i boost)
    assert got[3] < got[7]
    # a worked value: counts [1, 2, 3], s = 0.5
    z = [-1.224744871391589, 0.0, 1.224744871391589]
    n_prime = [1 / (1 + math.exp(-(z[0] + 2))), 1 / (1 + math.exp(-(z[1] + 1))), 1 / (1 + math.exp(-(z[2] + 2 / 3)))]
    expected = [0.5 + 0.1 * (1 - p * 3 / sum(n_prime)) for p in n_prime]
    assert activation_sparsity([1, 2, 3], 0.5) == pytest.approx(expected, abs=1e-12)


def test_activation_with_equal_counts_uses_only_the_alpha_term():
    got = activation_sparsity([5, 5, 5, 5], 0.4)
    assert got[0] > got[-1] or got[0] < got[-1]  # α/i makes them differ
    assert statistics.fmean(got) == pytest.approx(0.4)


def test_owl_by_hand():
    ratios = [0.01, 0.03, 0.02, 0.00]
    # min-max to [0, 0.16]: [0.0533, 0.16, 0.1067, 0]; mean 0.08; sparsity = s - (scaled - mean)
    scaled = [r / 0.03 * 0.16 for r in ratios]
    expected = [0.6 - (x - statistics.fmean(scaled)) for x in scaled]
    got = owl_from_ratios(ratios, 0.6, lam=0.08)
    assert got == pytest.approx(expected, abs=1e-12)
    assert statistics.fmean(got) == pytest.approx(0.6)
    assert got[1] == min(got)  # most outliers -> least pruned


def test_owl_from_scores_and_outlier_ratio():
    layer = torch.tensor([1.0] * 9 + [100.0])  # mean 10.9; one value above 5x the mean
    assert outlier_ratio(layer, m=5.0) == pytest.approx(0.1)
    assert owl_sparsity([layer, torch.ones(10)], 0.5, m=5.0, lam=0.08) == pytest.approx([0.42, 0.58])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_targets_outside_unit_interval_are_rejected(bad):
    for fn in (lambda: uniform_sparsity(4, bad), lambda: activation_sparsity([1, 2], bad), lambda: owl_from_ratios([0.1, 0.2], bad)):
        with pytest.raises(ValueError, match=rf"Sparsity {bad} is outside \[0, 1\)"):
            fn()


def test_results_outside_unit_interval_are_rejected():
    with pytest.raises(ValueError, match="outside \\[0, 1\\)"):
        activation_sparsity([1, 1000, 1, 1], 0.95, beta=1.0)
    with pytest.raises(ValueError, match="OWL allocation"):
        owl_from_ratios([0.0, 1.0], 0.05, lam=0.5)


def test_nm_must_match_sparsity():
    check_nm(0.5, 2, 4)
    check_nm(0.5, 0, 0)
    with pytest.raises(ValueError, match="N:M 2:4 prunes 0.500 of the weights, but sparsity 0.6 was asked"):
        check_nm(0.6, 2, 4)
    with pytest.raises(ValueError, match="0 < n < m"):
        check_nm(0.5, 4, 2)
    with pytest.raises(ValueError, match="0 < n < m"):
        check_nm(0.5, 2, 0)
