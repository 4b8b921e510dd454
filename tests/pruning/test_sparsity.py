"""Layer-wise sparsity allocations against hand-computed values (docs/method.md §4)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from lit_activation.pruning.sparsity import (
    activation_sparsity,
    alpha_sparsity,
    check_nm,
    esd_alpha,
    hill_alpha,
    outlier_ratio,
    owl_from_ratios,
    owl_sparsity,
    uniform_sparsity,
    weighted_mean,
)
from tests.helpers.naive import paper_formula


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
    """std 0: z = 0, so N'_i = sigmoid(α/i) alone; layer 1 (the largest boost) is pruned least."""
    got = activation_sparsity([5, 5, 5, 5], 0.4)
    n_prime = [1 / (1 + math.exp(-2.0 / i)) for i in range(1, 5)]
    expected = [0.4 + 0.2 * 0.4 * (1 - p * 4 / sum(n_prime)) for p in n_prime]
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[0] < got[1] < got[2] < got[3]
    assert statistics.fmean(got) == pytest.approx(0.4, abs=1e-12)


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


def power_law(n: int, alpha: float, xmin: float, seed: int) -> torch.Tensor:
    """n draws from the density ∝ x^−α on [xmin, ∞) (inverse transform of a uniform)."""
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return xmin * u ** (-1 / (alpha - 1))


@pytest.mark.parametrize("alpha", [2.0, 3.5, 6.0])
def test_hill_estimator_recovers_a_known_power_law(alpha):
    """Above the median the tail of a power law is the same power law, so the Hill estimate with
    xmin = mid is the MLE of α from n/2 = 10000 values: its standard error is (α−1)/√n ≤ 0.05; within
    0.15 (3 standard errors), and a wrong estimator (e.g. without the +1, or log10) is off by ≥ 1."""
    values = power_law(20000, alpha, 0.01, seed=int(alpha * 10))
    assert hill_alpha(values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(1))]) == pytest.approx(alpha, abs=0.15)


def test_hill_estimator_by_hand():
    # sorted [1, 2, 4, 8]: median index 2 -> tail [4, 8], n = 2, Σ ln(λ/4) = ln 2: α = 1 + 2 / ln 2
    assert hill_alpha(torch.tensor([8.0, 1.0, 4.0, 2.0])) == pytest.approx(1 + 2 / math.log(2), rel=1e-12)
    with pytest.raises(ValueError, match="flat"):
        hill_alpha(torch.ones(6))
    with pytest.raises(ValueError, match="'peak' is not supported"):
        hill_alpha(torch.arange(1.0, 5.0), xmin="peak")


def test_esd_alpha_uses_the_squared_singular_values():
    w = torch.diag(torch.tensor([1.0, 2.0, 4.0, 8.0]))  # singular values 1..8: eigenvalues of WᵀW 1, 4, 16, 64
    assert esd_alpha(w) == pytest.approx(1 + 2 / math.log(4), rel=1e-6)


def test_alpha_mapping_by_hand():
    """Metrics [3, 5, 4] with ε = 0.2: ratios [0.8, 1.2, 1.0] (higher α, more sparsity); equal layer
    sizes: scaled by s·3/Σr = 0.5; sizes [1, 1, 2]: by s·4/(0.8 + 1.2 + 2·1.0) = 0.5 too."""
    assert alpha_sparsity([3, 5, 4], [10, 10, 10], 0.5, 0.2) == pytest.approx([0.4, 0.6, 0.5], abs=1e-12)
    got = alpha_sparsity([3, 5, 4], [1, 1, 3], 0.5, 0.2)
    scale = 0.5 * 5 / (0.8 + 1.2 + 3 * 1.0)
    assert got == pytest.approx([0.8 * scale, 1.2 * scale, scale], abs=1e-12)
    assert weighted_mean(got, [1, 1, 3]) == pytest.approx(0.5, abs=1e-12)
    assert alpha_sparsity([2, 2, 2], [5, 6, 7], 0.6, 0.3) == pytest.approx([0.6] * 3, abs=1e-12)  # no spread: uniform
    with pytest.raises(ValueError, match="outside \\[0, 1\\)"):
        alpha_sparsity([1, 9], [1, 1], 0.9, 0.3)  # 0.9 · 1.3 > 1
    with pytest.raises(ValueError, match="epsilon"):
        alpha_sparsity([1, 2], [1, 1], 0.5, 1.0)
