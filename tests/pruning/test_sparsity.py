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
    esd_peak,
    hill_alpha,
    outlier_ratio,
    owl_from_ratios,
    owl_sparsity,
    peak_candidates,
    peak_fit,
    uniform_sparsity,
    weighted_mean,
)
from tests.helpers.naive import naive_alpha_peak, paper_formula


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
    with pytest.raises(ValueError, match="'median' is not supported; accepted: 'mid' .* or 'peak'"):
        hill_alpha(torch.arange(1.0, 5.0), xmin="median")


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
    with pytest.raises(ValueError, match="outside \\[0, 1\\): \\[\\(1, 1.17\\d*\\)\\]; lower the target sparsity or epsilon \\(ε\\)$"):
        alpha_sparsity([1, 9], [1, 1], 0.9, 0.3)  # 0.9 · 1.3 > 1
    with pytest.raises(ValueError, match="epsilon"):
        alpha_sparsity([1, 2], [1, 1], 0.5, 1.0)


def spectrum(*values: float) -> torch.Tensor:
    return torch.tensor(sorted(values), dtype=torch.float64)


def hand_fit(values: list[float], i: int) -> tuple[float, float]:
    """(α, D) of the tail from sorted index i, the formulas written out: α = 1 + n / Σ ln(λ_j/λ_i),
    D = max_k |1 − (λ_{i+k}/λ_i)^(1−α) − k/n|."""
    tail = sorted(values)[i:]
    n = len(tail)
    alpha = 1 + n / sum(math.log(t / tail[0]) for t in tail)
    return alpha, max(abs(1 - (t / tail[0]) ** (1 - alpha) - k / n) for k, t in enumerate(tail))


def test_xmin_peak_by_hand_on_four_eigenvalues():
    """[1, 2, 4, 8]: log10 over [0, 0.903] in 100 bins holds one value per bin, so the fullest is the
    first (first of equal ones): p = 10⁰ = 1, window [log10 0.95, 1.5]; 2 > 1.5 stops the search, so
    the only candidate is λ = 1: α = 1 + 4 / (ln 1 + ln 2 + ln 4 + ln 8) = 1 + 2 / (3 ln 2)."""
    alpha = 1 + 2 / (3 * math.log(2))
    distance = max(abs(1 - 2 ** (1 - alpha) - 1 / 4), abs(1 - 4 ** (1 - alpha) - 2 / 4), abs(1 - 8 ** (1 - alpha) - 3 / 4))
    assert esd_peak(spectrum(8, 1, 4, 2)) == 1.0 and list(peak_candidates(spectrum(8, 1, 4, 2))) == [0]
    assert peak_fit(spectrum(8, 1, 4, 2)) == pytest.approx((alpha, 1.0, distance), rel=1e-12)
    assert hill_alpha(torch.tensor([8.0, 1.0, 4.0, 2.0]), "peak") == pytest.approx(alpha, rel=1e-12)
    assert hill_alpha(torch.tensor([8.0, 1.0, 4.0, 2.0]), "mid") == pytest.approx(1 + 2 / math.log(2), rel=1e-12)  # a different tail


def test_the_peak_is_the_lower_edge_of_the_fullest_log10_bin_the_first_of_equal_ones():
    """log10 of [1, 1.01, 1.5, 1.5, 10, 100] over [0, 2]: bins of 0.02; 1 and 1.01 in bin 0, both
    1.5 in bin ⌊0.1761 / 0.02⌋ = 8: a tie, the first wins (p = 1); a third value there makes bin 8
    the fullest: p = 10^(2 · 8 / 100). The largest value falls in the last bin, not past it."""
    assert esd_peak(spectrum(1, 1.01, 1.5, 1.5, 10, 100)) == 1.0
    assert esd_peak(spectrum(1, 1.01, 1.48, 1.5, 1.5, 10, 100)) == pytest.approx(10 ** 0.16, rel=1e-12)
    assert esd_peak(spectrum(1, 90, 95, 99, 100, 100)) == pytest.approx(10 ** (2 * 99 / 100), rel=1e-12)  # 3 in the last bin (log10 >= 1.98)


def test_the_peak_window_at_and_just_past_its_edges():
    """Upper edge 1.5·p inclusive, as the reference breaks only above it; lower edge log10(0.95·p),
    the reference's log10 compared with the eigenvalues themselves: with the peak at 10^1.98
    (4 of 95-99 in bin ⌊log10(96) / 0.03⌋ = 66 of [0, 3]) the bound is log10(90.72) = 1.958, so the
    eigenvalue 2.0, fifty times below the peak, is a candidate and 1.0 is not."""
    above = math.nextafter(1.5, math.inf)
    assert list(peak_candidates(spectrum(1.0, 1.01, 1.5, above, 10, 100))) == [0, 1, 2]  # p = 1: 1.5 in, the next float out
    assert list(peak_candidates(spectrum(1.0, 1.01, above, above, 10, 100))) == [0, 1]
    peak = 10 ** (3 * 66 / 100)
    bound = math.log10(0.95 * peak)
    values = spectrum(1.0, math.nextafter(bound, -math.inf), bound, 2.0, 95, 96, 97, 98, 99, 300, 1000)
    assert esd_peak(values) == pytest.approx(peak, rel=1e-15)
    assert list(peak_candidates(values)) == [2, 3, 4, 5, 6, 7, 8]  # the bound itself and up to 99 (1.5·p = 143): not 300
    expected = min((hand_fit(values.tolist(), i) + (float(values[i]),) for i in range(2, 9)), key=lambda fit: fit[1])
    assert peak_fit(values) == pytest.approx((expected[0], expected[2], expected[1]), rel=1e-12)


def test_xmin_peak_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="needs at least 2 finite, positive eigenvalues"):
        hill_alpha(torch.tensor([0.0, 1.0, 2.0]), "peak")
    with pytest.raises(ValueError, match="flat"):
        hill_alpha(torch.ones(5), "peak")
    # the fullest bin is the last, holding only the largest value twice: no candidate below the largest
    with pytest.raises(ValueError, match="finds no candidate"):
        hill_alpha(torch.tensor([1.0, 1000.0, 1000.0]), "peak")


@pytest.mark.parametrize("alpha", [2.0, 3.5, 6.0])
def test_xmin_peak_recovers_a_known_power_law_and_equals_numpy(alpha):
    """A power law's log10 density falls from its xmin, so the peak is the first bin and the candidates
    the values up to 1.5·xmin; every candidate's tail is the same power law: the best fit is within 3
    standard errors ((α−1)/√n, n ≥ 1000 here) of α, and numpy's histogram and a plain loop agree."""
    values = power_law(2000, alpha, 0.01, seed=int(alpha * 10))
    assert hill_alpha(values, "peak") == pytest.approx(alpha, abs=3 * (alpha - 1) / math.sqrt(1000))
    assert hill_alpha(values, "peak") == pytest.approx(naive_alpha_peak(values.numpy()), rel=1e-10)
