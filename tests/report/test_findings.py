"""`lit_activation.report.findings` at its decision edges: every interval recomputed here, every verdict rule tried just inside and just outside.

Intervals are recomputed by scipy.stats.bootstrap called in this file, with statistics written here (not findings' own) and the
constants of docs/method.md written out (95 %, percentile), so a changed statistic, pairing, level or seed shows. Verdict fixtures
are mostly bounded by construction (constant or bounded values), so every resample lies on the intended side of an edge whatever
the generator draws, yet close enough that moving the edge (0.05 -> 0.04 or 0.06, p 0.05, the seed spread) changes the verdict;
where only the bootstrap reaches an edge (V3's "not held", F3's overlap), the test also asserts which side scipy's interval is on.
"""

from __future__ import annotations

import inspect
import math
import statistics

import numpy as np
import pytest
from scipy import stats

from lit_activation.report import findings

SEED, RESAMPLES = 3, 1000  # a seed other than 0: an implementation that ignored it would not match
RNG = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"  # scipy >= 1.15 / older


def scipy_interval(data, statistic, *, paired, seed=SEED):
    """95 % percentile bootstrap by scipy, with the test's own (one-resample-at-a-time) statistic."""
    ci = stats.bootstrap(
        tuple(np.asarray(d, dtype=np.float64) for d in data), statistic, paired=paired, vectorized=False, n_resamples=RESAMPLES,
        confidence_level=0.95, method="percentile", **{RNG: np.random.default_rng(seed)},
    ).confidence_interval
    return float(ci.low), float(ci.high)


def spearman(x, y):
    return stats.spearmanr(x, y).statistic


def rows_with_drops(drops):
    """3-layer LLMDcos rows whose first-minus-last-third difference is each of `drops` (layer 1 is in neither third)."""
    return [[0.5 + d, 0.9, 0.5] for d in drops]


# ---------------------------------------------------------------------------------------------
# every interval against scipy


def test_finding1_interval_resamples_each_half_separately():
    """F1: unpaired bootstrap of log((m_s + 1) / (m_d + 1)); an odd depth leaves the middle layer out."""
    counts = [50, 900, 1000, 700, 650, 10_000, 600, 300, 200, 100, 80]
    shallow, deep = counts[:5], counts[6:]
    a = findings.count_profile("c", counts, seed=SEED, resamples=RESAMPLES)
    assert a.statistic == pytest.approx(math.log((np.mean(shallow) + 1) / (np.mean(deep) + 1)))
    expected = scipy_interval((shallow, deep), lambda s, d: math.log((s.mean() + 1) / (d.mean() + 1)), paired=False)
    assert a.interval == pytest.approx(expected, rel=1e-12)


def test_finding1b_interval_pairs_deep_layers_of_the_averaged_datasets():
    """F1b: corpora and task sets each averaged per deep layer, then a paired bootstrap over deep layers."""
    rng = np.random.default_rng(3)
    corpora = {name: rng.integers(100, 1000, 12).tolist() for name in ("c4", "wikitext2")}
    tasks = {name: rng.integers(0, 900, 12).tolist() for name in ("boolq", "mmlu", "siqa")}
    c = np.array([(corpora["c4"][i] + corpora["wikitext2"][i]) / 2 for i in range(6, 12)])  # deep half: layers 6-11
    t = np.array([(tasks["boolq"][i] + tasks["mmlu"][i] + tasks["siqa"][i]) / 3 for i in range(6, 12)])
    a = findings.corpora_deep("c", corpora, tasks, seed=SEED, resamples=RESAMPLES)
    assert a.statistic == pytest.approx(math.log((c.mean() + 1) / (t.mean() + 1)))
    expected = scipy_interval((c, t), lambda x, y: math.log((x.mean() + 1) / (y.mean() + 1)), paired=True)
    assert a.interval == pytest.approx(expected, rel=1e-12)


def test_finding2_interval_resamples_per_pair_drops_and_drops_nan_pairs():
    """F2: per sample pair, first-third mean minus last-third mean (L = 10: layers 0-2 and 7-9); NaN there drops the pair."""
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, size=(15, 10))
    values[4, 1] = np.nan  # in the first third: pair dropped
    values[9, 5] = np.nan  # in the middle: pair kept
    keep = [i for i in range(15) if i != 4]
    drops = [values[i, :3].mean() - values[i, 7:].mean() for i in keep]
    a = findings.depth_drop("c", values.tolist(), same_domain=False, seed=SEED, resamples=RESAMPLES)
    assert a.detail["n_pairs"] == 14 and a.detail["dropped_nan_pairs"] == 1
    assert a.statistic == pytest.approx(np.mean(drops))
    assert a.interval == pytest.approx(scipy_interval((drops,), lambda d: d.mean(), paired=False), rel=1e-12)


def test_finding3_interval_pairs_all_datasets_and_subtracts_the_largest_other():
    """F3: own mean minus the largest other mean, sample groups resampled together across all pairs; a NaN drops the group."""
    rng = np.random.default_rng(2)
    own, b, c = rng.uniform(0.4, 0.7, 12), rng.uniform(0.35, 0.65, 12), rng.uniform(0.2, 0.5, 12)
    c[7] = np.nan
    keep = np.arange(12) != 7
    a = findings.self_margin("c", own.tolist(), {"b": b.tolist(), "c": c.tolist()}, seed=SEED, resamples=RESAMPLES)
    assert a.detail["n_groups"] == 11
    ok, bk, ck = own[keep], b[keep], c[keep]
    assert a.statistic == pytest.approx(ok.mean() - max(bk.mean(), ck.mean()))
    expected = scipy_interval((ok, bk, ck), lambda x, y, z: x.mean() - max(y.mean(), z.mean()), paired=True)
    assert a.interval == pytest.approx(expected, rel=1e-12)


def test_validation3_interval_is_a_paired_bootstrap_of_spearman_without_nan_pairs():
    """V3: ρ and p recomputed from the finite pairs; interval of Spearman ρ over sentence pairs, paired."""
    rng = np.random.default_rng(4)
    gold = rng.uniform(0, 5, 25)
    scores = gold + rng.normal(0, 2, 25)
    scores[3], gold[10] = np.nan, np.nan
    keep = np.isfinite(scores) & np.isfinite(gold)
    a = findings.sts_correlation("c", None, None, scores.tolist(), gold.tolist(), seed=SEED, resamples=RESAMPLES)
    assert a.detail["n_pairs"] == 23
    assert a.statistic == pytest.approx(spearman(scores[keep], gold[keep]))
    assert a.detail["p_value"] == pytest.approx(stats.spearmanr(scores[keep], gold[keep]).pvalue)
    assert a.interval == pytest.approx(scipy_interval((scores[keep], gold[keep]), spearman, paired=True), rel=1e-12)


def test_rho_difference_interval_is_a_paired_bootstrap_over_sentence_pairs():
    """V3 beside the verdict: ρ(scores) − ρ(baseline), all three arrays resampled together; NaN pairs left out."""
    rng = np.random.default_rng(5)
    gold = rng.uniform(0, 5, 20)
    scores, baseline = gold + rng.normal(0, 1, 20), gold + rng.normal(0, 3, 20)
    baseline[2] = np.nan
    keep = np.isfinite(baseline)
    diff, interval = findings.rho_difference(scores.tolist(), baseline.tolist(), gold.tolist(), seed=SEED, resamples=RESAMPLES)
    x, b, y = scores[keep], baseline[keep], gold[keep]
    assert diff == pytest.approx(spearman(x, y) - spearman(b, y))
    assert interval == pytest.approx(scipy_interval((x, b, y), lambda p, q, g: spearman(p, g) - spearman(q, g), paired=True), rel=1e-12)
    assert findings.rho_difference([1.0, np.nan, np.nan, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0], seed=SEED) is None  # 2 finite pairs < 3
    assert findings.rho_difference([1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0, 3.0], seed=SEED) is None


# ---------------------------------------------------------------------------------------------
# Finding 1


@pytest.mark.parametrize("n_layers, assessed", [(5, False), (6, True), (7, True)])
def test_finding1_needs_three_layers_per_half(n_layers, assessed):
    """MIN_LAYERS_PER_HALF = 3: 5 layers (2 per half) cannot be assessed; 6 and 7 (3 per half) can."""
    counts = [100 * (n_layers - i) for i in range(n_layers)]
    a = findings.count_profile("c", counts, seed=SEED, resamples=RESAMPLES)
    assert (a.verdict == findings.HELD) is assessed and (a.verdict == findings.CANNOT) is (not assessed)
    tasks = {"boolq": [100] * n_layers}
    b = findings.corpora_deep("c", {"c4": [200] * n_layers}, tasks, seed=SEED, resamples=RESAMPLES)
    assert (b.verdict == findings.HELD) is assessed and (b.verdict == findings.CANNOT) is (not assessed)


@pytest.mark.parametrize("shallow, deep, verdict", [
    ([101, 101, 101], [100, 100, 100], findings.HELD),  # log(102/101) ≈ +0.0098 in every resample
    ([99, 99, 99], [100, 100, 100], findings.NOT_HELD),  # log(100/101) ≈ −0.0099
    ([90, 100, 110], [95, 100, 105], findings.INCONCLUSIVE),  # the halves overlap: the interval holds 0
])
def test_finding1_verdict_just_either_side_of_zero(shallow, deep, verdict):
    """F1: held only if the interval's low is above 0, not held only if its high is below 0."""
    a = findings.count_profile("c", [*shallow, *deep], seed=SEED, resamples=RESAMPLES)
    assert a.verdict == verdict
    low, high = scipy_interval((shallow, deep), lambda s, d: math.log((s.mean() + 1) / (d.mean() + 1)), paired=False)
    assert (low > 0, high < 0) == (verdict == findings.HELD, verdict == findings.NOT_HELD)


def test_finding1_plus_one_keeps_an_empty_half_finite():
    """F1: log((m_s + 1) / (m_d + 1)): a deep half with no activated parameter gives a finite statistic."""
    a = findings.count_profile("c", [5, 3, 0, 0, 0, 0], seed=SEED, resamples=RESAMPLES)
    assert a.statistic == pytest.approx(math.log((8 / 3 + 1) / 1))
    assert all(math.isfinite(v) for v in a.interval)


# ---------------------------------------------------------------------------------------------
# Finding 2


@pytest.mark.parametrize("drops, verdict", [
    ([0.045] * 12, findings.HELD),  # falls by 0.045 ≤ 0.05 (a margin of 0.04 would make it "not held")
    (np.linspace(0.030, 0.049, 12), findings.HELD),  # interval high just below 0.05
    (np.linspace(0.041, 0.059, 24), findings.INCONCLUSIVE),  # interval round 0.05 (0.04 or 0.06 would decide it)
    (np.linspace(0.051, 0.070, 12), findings.NOT_HELD),  # interval low just above 0.05
    ([0.055] * 12, findings.NOT_HELD),  # falls by 0.055 > 0.05 (a margin of 0.06 would make it "held")
    ([-0.2] * 12, findings.HELD),  # rising is held: the paper's "consistent or increases"
])
def test_same_domain_margin_edges(drops, verdict):
    """F2 same-domain: held if the interval's high ≤ 0.05, not held if its low > 0.05."""
    a = findings.depth_drop("c", rows_with_drops(drops), same_domain=True, seed=SEED, resamples=RESAMPLES)
    assert a.statistic == pytest.approx(np.mean(drops))
    assert a.verdict == verdict, a.interval
    assert a.detail["margin"] == 0.05
    cross = findings.depth_drop("c", rows_with_drops(drops), same_domain=False, seed=SEED, resamples=RESAMPLES)
    assert cross.verdict == (findings.NOT_HELD if drops[0] < 0 else findings.HELD)  # cross-domain pairs are judged against 0, not the margin


@pytest.mark.parametrize("drops, verdict", [
    (np.linspace(0.001, 0.02, 12), findings.HELD),
    (np.linspace(-0.01, 0.01, 12), findings.INCONCLUSIVE),
    (np.linspace(-0.02, -0.001, 12), findings.NOT_HELD),
])
def test_cross_domain_verdict_just_either_side_of_zero(drops, verdict):
    """F2 cross-domain: held if the interval's low > 0, not held if its high < 0."""
    assert findings.depth_drop("c", rows_with_drops(drops), same_domain=False, seed=SEED, resamples=RESAMPLES).verdict == verdict


def test_finding2_needs_three_usable_pairs_and_three_layers():
    """MIN_SAMPLES = 3 usable sample pairs (NaN pairs do not count); ⌊L/3⌋ ≥ 1."""
    nan_pair = [np.nan, 0.9, 0.5]
    three = findings.depth_drop("c", [*rows_with_drops([0.1, 0.2, 0.3]), nan_pair], same_domain=False, seed=SEED, resamples=RESAMPLES)
    assert three.verdict == findings.HELD and three.detail["n_pairs"] == 3 and three.detail["dropped_nan_pairs"] == 1
    two = findings.depth_drop("c", [*rows_with_drops([0.1, 0.2]), nan_pair], same_domain=False, seed=SEED, resamples=RESAMPLES)
    assert two.verdict == findings.CANNOT and "2 usable sample pairs" in two.reason
    shallow = findings.depth_drop("c", [[0.9, 0.1]] * 5, same_domain=False, seed=SEED, resamples=RESAMPLES)
    assert shallow.verdict == findings.CANNOT and "needs at least 3" in shallow.reason


# ---------------------------------------------------------------------------------------------
# Finding 3


def bounded(centre, n=12, half_width=0.004):
    """n values spread evenly within centre ± half_width."""
    return np.linspace(centre - half_width, centre + half_width, n)[np.random.default_rng(int(centre * 1000)).permutation(n)].tolist()


def test_finding3_compares_with_the_largest_other_not_their_mean():
    """F3, three datasets: own 0.50 lies below b (0.55) but above the mean of b and c (0.425): not held."""
    a = findings.self_margin("c", bounded(0.50), {"b": bounded(0.55), "c": bounded(0.30)}, seed=SEED, resamples=RESAMPLES)
    assert a.detail["best_other"] == "b" and a.detail["best_other_value"] == pytest.approx(0.55)
    assert a.statistic == pytest.approx(0.50 - 0.55)  # not 0.50 − 0.425
    assert a.verdict == findings.NOT_HELD  # every resample: own ≤ 0.504 < 0.546 ≤ b


def test_finding3_held_just_above_the_largest_other():
    """F3, three datasets: own 0.56 over b 0.55 by 0.01, more than the spreads allow to vanish: held; own 0.551, within them: inconclusive."""
    held = findings.self_margin("c", bounded(0.56), {"b": bounded(0.55), "c": bounded(0.20)}, seed=SEED, resamples=RESAMPLES)
    assert held.statistic == pytest.approx(0.01) and held.verdict == findings.HELD  # every resample: own ≥ 0.556 > 0.554 ≥ b
    overlap = findings.self_margin("c", bounded(0.551), {"b": bounded(0.55), "c": bounded(0.20)}, seed=SEED, resamples=RESAMPLES)
    low, high = scipy_interval((bounded(0.551), bounded(0.55), bounded(0.20)), lambda x, y, z: x.mean() - max(y.mean(), z.mean()), paired=True)
    assert low < 0 < high and overlap.interval == pytest.approx((low, high), rel=1e-12)
    assert overlap.verdict == findings.INCONCLUSIVE


def test_finding3_needs_three_groups_and_another_dataset():
    """MIN_SAMPLES = 3 finite sample groups across every pair; at least one other dataset."""
    own, other = [0.9, 0.8, 0.85, 0.95], [0.1, 0.2, np.nan, 0.15]
    assert findings.self_margin("c", own, {"b": other}, seed=SEED, resamples=RESAMPLES).verdict == findings.HELD  # 3 groups
    two = findings.self_margin("c", own[:3], {"b": other[:3]}, seed=SEED, resamples=RESAMPLES)
    assert two.verdict == findings.CANNOT and "2 usable sample groups" in two.reason
    assert findings.self_margin("c", own, {}, seed=SEED).verdict == findings.CANNOT


# ---------------------------------------------------------------------------------------------
# Validation 1: no bootstrap, the seed spread


@pytest.mark.parametrize("uniform, verdict", [
    ([10.11, 10.21, 10.31], findings.HELD),  # diff −0.21, spread 0.2
    ([10.09, 10.19, 10.29], findings.INCONCLUSIVE),  # diff −0.19: within the spread
    ([9.69, 9.79, 9.89], findings.NOT_HELD),  # diff +0.21
    ([9.71, 9.81, 9.91], findings.INCONCLUSIVE),  # diff +0.19
])
def test_validation1_difference_just_either_side_of_the_seed_spread(uniform, verdict):
    """V1: a verdict only when |mean_act − mean_uni| > std_act + std_uni (sample stds, here 0.1 each)."""
    method = [9.9, 10.0, 10.1]
    a = findings.versus_uniform("c", method, uniform)
    diff = sum(method) / 3 - sum(uniform) / 3
    assert a.statistic == pytest.approx(diff)
    assert a.detail["spread"] == pytest.approx(0.1 + 0.1)  # sqrt(((−0.1)² + 0² + 0.1²) / 2) each
    assert a.verdict == verdict
    if verdict == findings.INCONCLUSIVE:
        assert a.reason == "difference within the seed spread"


def test_validation1_needs_two_seeds_each():
    """V1: two seeds each is enough; one seed on either side is inconclusive however large the difference."""
    assert findings.versus_uniform("c", [9.0, 9.02], [10.0, 10.02]).verdict == findings.HELD
    for method, uniform in (([9.0, 9.02], [10.0]), ([9.0], [10.0, 10.02])):
        a = findings.versus_uniform("c", method, uniform)
        assert a.verdict == findings.INCONCLUSIVE and a.reason == "1 seed"



@pytest.mark.parametrize("wanda, verdict", [
    ([10.11, 10.21, 10.31], findings.HELD),  # SparseGPT lower by 0.21, spread 0.2
    ([10.09, 10.19, 10.29], findings.INCONCLUSIVE),  # lower by 0.19: within the spread
    ([9.69, 9.79, 9.89], findings.NOT_HELD),  # Wanda lower by 0.21
    ([9.71, 9.81, 9.91], findings.INCONCLUSIVE),  # Wanda lower by 0.19
])
def test_sparsegpt_against_wanda_just_either_side_of_the_seed_spread(wanda, verdict):
    """Beyond the paper, one allocation and sparsity: SparseGPT's mean − Wanda's, a verdict only beyond std + std (0.1 each)."""
    sparsegpt = [9.9, 10.0, 10.1]
    a = findings.versus_metric("c", sparsegpt, wanda)
    assert a.statistic == pytest.approx(sum(sparsegpt) / 3 - sum(wanda) / 3)
    assert a.detail["spread"] == pytest.approx(0.2) and a.detail["baseline_mean"] == pytest.approx(sum(wanda) / 3)
    assert a.verdict == verdict
    if verdict == findings.INCONCLUSIVE:
        assert a.reason == "difference within the seed spread"


def test_sparsegpt_against_wanda_needs_two_seeds_each_finite_runs_and_both_methods():
    assert findings.versus_metric("c", [9.0, 9.02], [10.0, 10.02]).verdict == findings.HELD
    assert findings.versus_metric("c", [9.0, 9.02], [10.0]).reason == findings.versus_metric("c", [9.0], [10.0, 10.02]).reason == "1 seed"
    assert findings.versus_metric("c", [9.0, math.inf], [10.0, 10.02]).reason == "non-finite perplexity"
    missing = findings.versus_metric("c", [], [10.0, 10.02])
    assert missing.verdict == findings.CANNOT and missing.reason == "no runs of one of the two methods at this allocation and sparsity"


@pytest.mark.parametrize("method, uniform", [([9.0, math.nan], [10.0, 10.02]), ([9.0, 9.02], [10.0, math.inf]), ([math.nan], [10.0, 10.02])])
def test_validation1_a_diverged_seed_is_inconclusive(method, uniform):
    """V1: a NaN or infinite perplexity (a diverged run) gives "inconclusive", not an exception from the seed std."""
    a = findings.versus_uniform("c", method, uniform)
    assert a.verdict == findings.INCONCLUSIVE and a.reason == "non-finite perplexity"
    assert math.isnan(findings.mean_std([9.0, math.inf])[1])


# ---------------------------------------------------------------------------------------------
# Validation 2: normal interval


def test_accuracy_standard_error_by_hand():
    """V2: se = sqrt(mean stderr² + seed variance / k); a missing stderr is left out, none at all counts as 0."""
    acc = findings.accuracy([0.40, 0.42], [0.010, 0.012])
    assert acc.mean == pytest.approx(0.41) and acc.seeds == 2
    assert acc.se == pytest.approx(math.sqrt(0.011**2 + statistics.variance([0.40, 0.42]) / 2))
    assert findings.accuracy([0.40, 0.42], [0.010, None]).se == pytest.approx(math.sqrt(0.010**2 + 0.0002 / 2))
    assert findings.accuracy([0.40, 0.43, 0.46], [None] * 3).se == pytest.approx(math.sqrt(0.0009 / 3))


# matched: acc 0.40, 0.42 over 2 seeds, stderr 0.01 each: se = sqrt(0.01² + 0.0002 / 2) = sqrt(0.0002); the same for other.
# half width = 1.96 · sqrt(0.0002 + 0.0002) = 1.96 · 0.02 ≈ 0.0392.
HALF = 1.959963984540054 * 0.02


@pytest.mark.parametrize("shift, verdict", [
    (+0.0405, findings.HELD),  # low = +0.0013
    (+0.0380, findings.INCONCLUSIVE),  # low = −0.0012
    (-0.0380, findings.INCONCLUSIVE),  # high = +0.0012
    (-0.0405, findings.NOT_HELD),  # high = −0.0013
])
def test_validation2_interval_just_either_side_of_zero_with_two_seeds(shift, verdict):
    """V2: diff ± 1.96·sqrt(se_C² + se_O²) with se from stderr and the seed spread; held if low > 0, not held if high < 0."""
    matched = findings.accuracy([0.40, 0.42], [0.01, 0.01])
    other = findings.accuracy([0.40 - shift, 0.42 - shift], [0.01, 0.01])
    a = findings.calibration_advantage("c", matched, other)
    assert a.statistic == pytest.approx(shift)
    assert a.interval == pytest.approx((shift - HALF, shift + HALF))
    assert a.verdict == verdict


def test_validation2_one_seed_without_stderr_is_inconclusive():
    """V2: no stderr and one seed each: no interval at all."""
    a = findings.calibration_advantage("c", findings.accuracy([0.6], [None]), findings.accuracy([0.3], [None]))
    assert a.verdict == findings.INCONCLUSIVE and a.interval is None and "1 seed" in a.reason


# ---------------------------------------------------------------------------------------------
# Validation 3: Spearman ρ and its p-value

GOLD = list(range(20))
P_BELOW = [6, 1, 8, 16, 4, 5, 11, 17, 0, 9, 10, 2, 12, 13, 7, 15, 3, 14, 18, 19]  # Σd² = 738: ρ ≈ 0.4451, p ≈ 0.0492
P_ABOVE = [6, 1, 8, 16, 5, 4, 11, 17, 0, 9, 10, 2, 12, 13, 7, 15, 3, 14, 18, 19]  # scores of pairs 4 and 5 swapped, Σd² = 740: ρ ≈ 0.4436, p ≈ 0.0501


def test_validation3_p_value_just_either_side_of_alpha_recomputed():
    """V3 from per-pair values only (rho None): ρ > 0 and p < 0.05 is held; the same ρ > 0 with p just above 0.05 is not."""
    below, above = stats.spearmanr(P_BELOW, GOLD), stats.spearmanr(P_ABOVE, GOLD)
    assert 0.049 < below.pvalue < 0.0495 and 0.0500 < above.pvalue < 0.0505 and above.statistic > 0
    a = findings.sts_correlation("c", None, None, P_BELOW, GOLD, seed=SEED, resamples=RESAMPLES)
    assert a.verdict == findings.HELD and a.detail["p_value"] == pytest.approx(below.pvalue)
    b = findings.sts_correlation("c", None, None, P_ABOVE, GOLD, seed=SEED, resamples=RESAMPLES)
    assert b.verdict == findings.INCONCLUSIVE and b.statistic == pytest.approx(above.statistic)


@pytest.mark.parametrize("rho, p, verdict", [
    (0.3, 0.0499, findings.HELD),
    (0.3, 0.0501, findings.INCONCLUSIVE),
    (0.3, None, findings.INCONCLUSIVE),
    (-0.3, 0.001, findings.INCONCLUSIVE),  # significant but negative: never held; no per-pair values, so no "not held" either
    (0.0, 0.001, findings.INCONCLUSIVE),
])
def test_validation3_stored_rho_and_p_edges(rho, p, verdict):
    """V3 from the run's own ρ and p, without per-pair values: held needs ρ > 0 and p < 0.05."""
    a = findings.sts_correlation("c", rho, p, None, None, seed=SEED)
    assert a.verdict == verdict and a.interval is None
    if verdict == findings.INCONCLUSIVE:
        assert a.reason == "no per-pair values for an interval"


# negatively related scores: ρ < 0 with p < 0.05 in both, the interval's high either side of 0 (seed 3, 1000 resamples)
HIGH_BELOW_ZERO = [19, 18, 16, 17, 15, 14, 3, 7, 8, 5, 9, 1, 6, 0, 13, 4, 10, 2, 11, 12]
HIGH_ABOVE_ZERO = [19, 18, 17, 9, 1, 6, 16, 12, 8, 10, 11, 13, 7, 3, 5, 4, 14, 2, 15, 0]


@pytest.mark.parametrize("scores", [HIGH_BELOW_ZERO, HIGH_ABOVE_ZERO])
def test_validation3_not_held_only_when_the_interval_lies_below_zero(scores):
    """V3: not held if the interval's high < 0; a negative ρ whose interval reaches above 0 stays inconclusive, even at p < 0.05."""
    r = stats.spearmanr(scores, GOLD)
    assert r.statistic < 0 and r.pvalue < 0.05
    low, high = scipy_interval((scores, GOLD), spearman, paired=True)
    a = findings.sts_correlation("c", float(r.statistic), float(r.pvalue), scores, GOLD, seed=SEED, resamples=RESAMPLES)
    assert a.interval == pytest.approx((low, high), rel=1e-12)
    assert a.verdict == (findings.NOT_HELD if high < 0 else findings.INCONCLUSIVE)


def test_validation3_fixtures_reach_both_sides_of_zero():
    """The two fixtures above really sit either side of 0 (else they would test one branch twice)."""
    highs = [scipy_interval((s, GOLD), spearman, paired=True)[1] for s in (HIGH_BELOW_ZERO, HIGH_ABOVE_ZERO)]
    assert -0.1 < highs[0] < 0 < highs[1] < 0.1


def test_validation3_nan_pairs_and_too_few_pairs():
    """V3: NaN pairs are dropped; 3 finite pairs give an interval, 2 do not (and without a stored ρ, no assessment)."""
    three = findings.sts_correlation("c", None, None, [1.0, np.nan, 2.0, 3.0], [1.0, 5.0, 3.0, 2.0], seed=SEED, resamples=RESAMPLES)
    assert three.detail["n_pairs"] == 3 and three.interval is not None
    assert three.statistic == pytest.approx(spearman([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]))
    two = findings.sts_correlation("c", None, None, [1.0, np.nan, 2.0, 3.0], [1.0, 5.0, np.nan, 2.0], seed=SEED, resamples=RESAMPLES)
    assert two.verdict == findings.CANNOT and two.detail["n_pairs"] == 2
    stored = findings.sts_correlation("c", 0.9, 0.001, [1.0, np.nan, 2.0], [1.0, 5.0, 3.0], seed=SEED, resamples=RESAMPLES)
    assert stored.verdict == findings.HELD and stored.interval is None  # the run's own ρ and p still decide
    mismatch = findings.sts_correlation("c", 0.9, 0.001, [1.0, 2.0, 3.0], [1.0, 2.0], seed=SEED)
    assert mismatch.verdict == findings.CANNOT


@pytest.mark.parametrize(("runner_up", "verdict"), [([10.15, 10.15], findings.HELD), ([10.13, 10.13], findings.INCONCLUSIVE)])
def test_frontier_lead_just_either_side_of_the_seed_spread(runner_up, verdict):
    """Winner 10.0 ± 0.1414 (two seeds 9.9, 10.1); runner-up without spread: the lead must exceed 0.1414."""
    a = findings.frontier_winner("x", {"a + wanda": [9.9, 10.1], "b + taylor": runner_up, "c + wanda": [12.0, 12.0]})
    assert a.detail["winner"] == "a + wanda" and a.detail["runner_up"] == "b + taylor"
    assert a.statistic == pytest.approx(runner_up[0] - 10.0)
    assert a.detail["spread"] == pytest.approx(statistics.stdev([9.9, 10.1]))
    assert a.verdict == verdict


def test_frontier_needs_two_seeds_each_and_two_methods():
    assert findings.frontier_winner("x", {"a": [9.0], "b": [10.0, 10.0]}).reason == "1 seed"
    assert findings.frontier_winner("x", {"a": [9.0, 9.0]}).verdict == findings.CANNOT
    nan = findings.frontier_winner("x", {"a": [9.0, 9.0], "b": [math.nan, 10.0]})
    assert nan.detail["winner"] == "a" and nan.reason == "non-finite perplexity"


# ---------------------------------------------------------------------------------------------
# Edges where an interval or a difference is exactly at the rule's bound (a test review's findings)


def test_finding1_an_interval_that_touches_zero_is_inconclusive():
    """Equal, constant halves: every resample gives log(1) = 0, so the interval is (0, 0) and neither
    'low > 0' (held) nor 'high < 0' (not held) is true."""
    a = findings.count_profile("c", [100] * 6, seed=SEED, resamples=RESAMPLES)
    assert a.interval == (0.0, 0.0) and a.verdict == findings.INCONCLUSIVE


def test_finding1_with_no_parameter_above_the_threshold_cannot_be_assessed():
    assert findings.count_profile("c", [0] * 6, seed=SEED, resamples=RESAMPLES).verdict == findings.CANNOT
    assert findings.count_profile("c", [0, 0, 0, 0, 0, 1], seed=SEED, resamples=RESAMPLES).verdict != findings.CANNOT


def test_same_domain_drop_exactly_at_the_margin_is_held():
    """The rule is 'falls by at most 0.05': an interval of exactly (0.05, 0.05) is held."""
    a = findings.depth_drop("c", [[0.05, 0.9, 0.0]] * 4, same_domain=True, seed=SEED, resamples=RESAMPLES)
    assert a.interval == pytest.approx((0.05, 0.05), abs=1e-15) and a.verdict == findings.HELD


def test_validation1_and_the_frontier_with_no_difference_and_no_spread_are_inconclusive():
    """|difference| ≤ spread is inconclusive, also at 0 ≤ 0 (equal perplexities, seed-independent)."""
    assert findings.versus_uniform("c", [10.0, 10.0], [10.0, 10.0]).verdict == findings.INCONCLUSIVE
    assert findings.frontier_winner("x", {"a": [10.0, 10.0], "b": [10.0, 10.0]}).verdict == findings.INCONCLUSIVE


def test_the_frontier_never_crowns_a_method_with_a_nan_perplexity_whatever_the_order():
    for points in ({"b": [math.nan, 10.0], "a": [9.0, 9.0]}, {"a": [9.0, 9.0], "b": [math.nan, 10.0]}):
        assert findings.frontier_winner("x", points).detail["winner"] == "a"


def test_the_stored_matrix_diagonal_is_a_strict_row_maximum():
    assert findings.diagonal_is_row_max([[0.5, 0.5], [0.2, 0.6]]) == [False, True]  # a tie is not a maximum
    assert findings.diagonal_is_row_max([[0.5, 0.4, 0.6], [0.1, 0.6, 0.2], [0.0, 0.1, 0.3]]) == [False, True, True]


def test_rho_difference_needs_three_finite_pairs():
    three = findings.rho_difference([1.0, 2.0, 3.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], seed=SEED, resamples=RESAMPLES)
    assert three is not None and three[0] == pytest.approx(1.0 - 0.5)
    assert findings.rho_difference([1.0, 2.0, math.nan], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], seed=SEED, resamples=RESAMPLES) is None


def test_combine_of_nothing_is_not_run_and_of_unassessable_parts_cannot_be_assessed():
    assert findings.combine("c", []).verdict == findings.NOT_RUN
    assert findings.combine("c", [findings.cannot("p", "why")]).verdict == findings.CANNOT


def test_the_low_first_layer_is_strictly_below_both_next_layers():
    dip = lambda first: findings.count_profile("c", [first, 5, 7, 1, 1, 1], seed=SEED, resamples=RESAMPLES).detail["first_layer_below_next_two"]  # noqa: E731
    assert (dip(4), dip(5), dip(6)) == (True, False, False)  # 5 ties layer 1: not below it


def test_finding1b_needs_datasets_of_one_depth():
    a = findings.corpora_deep("c", {"wiki": [1.0] * 6}, {"boolq": [1.0] * 8}, seed=SEED, resamples=RESAMPLES)
    assert a.verdict == findings.CANNOT and "different layer counts [6, 8]" in a.reason


def test_an_unknown_or_non_finite_stderr_counts_as_none():
    with_nan = findings.accuracy([0.5, 0.7], [0.02, math.nan])
    assert with_nan.se == pytest.approx(math.sqrt(0.02**2 + statistics.variance([0.5, 0.7]) / 2))
    assert findings.accuracy([0.5, 0.7], [None, math.inf]).se == pytest.approx(math.sqrt(statistics.variance([0.5, 0.7]) / 2))
