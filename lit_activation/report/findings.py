"""Statistics and verdicts of the findings report: is each of the paper's claims held by these runs?

Pure functions of numbers (numpy/scipy; no torch, no files); `lit_activation.report` reads the run
directories and calls them. Each claim's statistic, interval and verdict rule is defined in
docs/method.md, "Findings report: operational definitions".
"""

from __future__ import annotations

import inspect
import itertools
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

HELD, NOT_HELD, INCONCLUSIVE, NOT_RUN = "held", "not held", "inconclusive", "not run"
CANNOT = "cannot assess"
CONFIDENCE = 0.95
RESAMPLES = 2000
ALPHA = 0.05  # V3: significance of Spearman's ρ
SAME_DOMAIN_MARGIN = 0.05  # F2: how far (cosine units) same-domain LLMDcos may fall and still count as flat
MIN_LAYERS_PER_HALF = 3  # F1: fewer layers per half give a bootstrap over 1-2 values, which says nothing
MIN_SAMPLES = 3  # F2, F3, V3: fewer sample pairs give no usable bootstrap
MIN_MOE_LAYERS = 3  # experts: fewer MoE layers give a bootstrap over 1-2 values, which says nothing
Z95 = 1.959963984540054  # V2: two-sided 95 % normal quantile

# scipy >= 1.15 takes `rng`; older releases only `random_state` (pyproject allows scipy >= 1.11).
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


@dataclass
class Assessment:
    """One verdict with what it rests on: JSON-ready through `as_dict`."""

    claim: str
    verdict: str
    statistic: float | None = None
    interval: tuple[float, float] | None = None
    reason: str = ""  # why inconclusive / why it cannot be assessed
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The verdict as printed: 'held', 'inconclusive (1 seed)', 'cannot assess: <why>'."""
        if self.verdict in (CANNOT, NOT_RUN) and self.reason:
            return f"{self.verdict}: {self.reason}"
        return f"{self.verdict} ({self.reason})" if self.reason else self.verdict

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with NaN/inf turned into None (JSON has no NaN)."""
        return _clean({
            "claim": self.claim, "verdict": self.verdict, "label": self.label, "statistic": self.statistic,
            "interval": list(self.interval) if self.interval else None, "reason": self.reason, "detail": self.detail,
        })


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def cannot(claim: str, why: str, **detail: Any) -> Assessment:
    """A claim whose inputs exist but lack something it needs."""
    return Assessment(claim, CANNOT, reason=why, detail=detail)


def not_run(claim: str, why: str = "") -> Assessment:
    """A claim none of the given run directories can speak to."""
    return Assessment(claim, NOT_RUN, reason=why)


# ---------------------------------------------------------------------------------------------
# shared machinery


def bootstrap_interval(
    data: Sequence[Sequence[float]], statistic: Callable[..., np.ndarray], *, paired: bool, seed: int, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of `statistic(*samples, axis=-1)` (vectorized), seeded.

    Percentile rather than BCa: it is defined for degenerate data (a half of constant layer counts),
    where BCa returns NaN.
    """
    arrays = tuple(np.asarray(d, dtype=np.float64) for d in data)
    result = stats.bootstrap(
        arrays, statistic, paired=paired, vectorized=True, n_resamples=resamples, confidence_level=CONFIDENCE,
        method="percentile", **{_RNG_KEYWORD: np.random.default_rng(seed)},
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def interval_verdict(low: float, high: float, margin: float = 0.0) -> str:
    """held if the interval lies above `margin`, not held if below, else inconclusive."""
    if low > margin:
        return HELD
    if high < margin:
        return NOT_HELD
    return INCONCLUSIVE


def combine(claim: str, parts: Sequence[Assessment]) -> Assessment:
    """A claim made for every part: held if all assessable parts are, not held if some part is not."""
    usable = [p for p in parts if p.verdict in (HELD, NOT_HELD, INCONCLUSIVE)]
    tally = {v: sum(p.verdict == v for p in usable) for v in (HELD, NOT_HELD, INCONCLUSIVE)}
    detail = {"parts": len(parts), **{k.replace(" ", "_"): n for k, n in tally.items()}, "unassessed": len(parts) - len(usable)}
    if not usable:
        reasons = "; ".join(dict.fromkeys(p.reason for p in parts if p.reason)) or "no part could be assessed"
        return Assessment(claim, CANNOT if parts else NOT_RUN, reason=reasons, detail=detail)
    unassessed = f"{len(parts) - len(usable)} part(s) not assessable" if len(usable) < len(parts) else ""
    if tally[NOT_HELD]:
        return Assessment(claim, NOT_HELD, reason=unassessed, detail=detail)
    if tally[HELD] == len(usable):
        return Assessment(claim, HELD, reason=unassessed, detail=detail)
    # why the parts were inconclusive (e.g. "1 seed"), said once each
    why = "; ".join(dict.fromkeys(p.reason for p in usable if p.verdict == INCONCLUSIVE and p.reason))
    return Assessment(claim, INCONCLUSIVE, reason="; ".join(r for r in (why, unassessed) if r), detail=detail)


# ---------------------------------------------------------------------------------------------
# Finding 1: activated-parameter counts per layer


def halves(n_layers: int) -> tuple[list[int], list[int]]:
    """(shallow, deep) layer indices: the first and last ⌊L/2⌋ layers (an odd L leaves the middle out)."""
    h = n_layers // 2
    return list(range(h)), list(range(n_layers - h, n_layers))


def _log_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    # +1: finite when a half has no activated parameter; negligible at real counts (thousands and up)
    return np.log((np.mean(a, axis=axis) + 1.0) / (np.mean(b, axis=axis) + 1.0))


def count_profile(claim: str, counts: Sequence[float], *, seed: int, resamples: int = RESAMPLES) -> Assessment:
    """Finding 1 for one dataset at one threshold: shallow-half vs deep-half mean count, peak, first-layer dip."""
    values = np.asarray(counts, dtype=np.float64)
    n = values.size
    shallow, deep = halves(n)
    peak = int(np.argmax(values)) if n else None
    detail = {
        "n_layers": n, "peak_layer": peak, "shallow_layers": [0, len(shallow) - 1] if shallow else None,
        "deep_layers": [deep[0], deep[-1]] if deep else None,
        "first_layer_below_next_two": bool(n >= 3 and values[0] < min(values[1], values[2])),
    }
    if len(shallow) < MIN_LAYERS_PER_HALF:
        return cannot(claim, f"{n} layers; needs at least {2 * MIN_LAYERS_PER_HALF} ({MIN_LAYERS_PER_HALF} per half)", **detail)
    if not values.any():
        return cannot(claim, "no parameter exceeds the threshold in any layer", **detail)
    s, d = values[shallow], values[deep]
    detail.update(shallow_mean=float(s.mean()), deep_mean=float(d.mean()), ratio=float((s.mean() + 1) / (d.mean() + 1)))
    stat = float(_log_ratio(s, d))
    low, high = bootstrap_interval((s, d), _log_ratio, paired=False, seed=seed, resamples=resamples)
    return Assessment(claim, interval_verdict(low, high), stat, (low, high), detail=detail)


def corpora_deep(
    claim: str, corpora: Mapping[str, Sequence[float]], tasks: Mapping[str, Sequence[float]], *, seed: int, resamples: int = RESAMPLES
) -> Assessment:
    """Finding 1b: do general corpora keep more activated parameters in the deep half than task sets?"""
    detail = {"corpora": sorted(corpora), "tasks": sorted(tasks)}
    if not corpora or not tasks:
        return cannot(claim, f"needs at least one corpus and one task set at this threshold (corpora {sorted(corpora)}, tasks {sorted(tasks)})", **detail)
    lengths = {len(v) for v in [*corpora.values(), *tasks.values()]}
    if len(lengths) != 1:
        return cannot(claim, f"datasets have different layer counts {sorted(lengths)}", **detail)
    _, deep = halves(lengths.pop())
    if len(deep) < MIN_LAYERS_PER_HALF:
        return cannot(claim, f"needs at least {MIN_LAYERS_PER_HALF} deep layers", **detail)
    c = np.mean([np.asarray(v, dtype=np.float64)[deep] for v in corpora.values()], axis=0)  # per deep layer, mean over corpora
    t = np.mean([np.asarray(v, dtype=np.float64)[deep] for v in tasks.values()], axis=0)
    detail.update(deep_layers=[deep[0], deep[-1]], corpora_deep_mean=float(c.mean()), tasks_deep_mean=float(t.mean()))
    stat = float(_log_ratio(c, t))
    low, high = bootstrap_interval((c, t), _log_ratio, paired=True, seed=seed, resamples=resamples)
    return Assessment(claim, interval_verdict(low, high), stat, (low, high), detail=detail)


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    """½ Σ |p_i − q_i| of two distributions over the same experts: 0 when equal, 1 when disjoint."""
    return 0.5 * sum(abs(a - b) for a, b in zip(p, q, strict=True))


def separation(distributions: Sequence[Sequence[float]]) -> float:
    """The mean total-variation distance over every pair of datasets' distributions."""
    pairs = list(itertools.combinations(distributions, 2))
    return sum(total_variation(p, q) for p, q in pairs) / len(pairs)


def experts_separation(claim: str, activated: Sequence[float], routing: Sequence[float], *, seed: int, resamples: int = RESAMPLES) -> Assessment:
    """Beyond the paper, a mixture of experts: do the experts' activated parameters separate the datasets
    more than their routing does? Per MoE layer, the mean total-variation distance between datasets'
    shares over the experts, of activated parameters (`activated`) and of tokens (`routing`).
    Statistic: the mean over layers of (activated − routing); interval: layers resampled. Held if the
    interval lies above 0, not held if below."""
    a, r = np.asarray(activated, dtype=np.float64), np.asarray(routing, dtype=np.float64)
    detail = {"n_layers": int(a.size), "activated_separation": float(a.mean()) if a.size else None, "routing_separation": float(r.mean()) if r.size else None}
    if a.shape != r.shape:
        return cannot(claim, f"{a.size} layers of activated shares vs {r.size} of token shares", **detail)
    if a.size < MIN_MOE_LAYERS:
        return cannot(claim, f"{a.size} MoE layers with two or more datasets; needs at least {MIN_MOE_LAYERS}", **detail)
    diff = a - r
    low, high = bootstrap_interval((diff,), np.mean, paired=False, seed=seed, resamples=resamples)
    return Assessment(claim, interval_verdict(low, high), float(diff.mean()), (low, high), detail=detail)


# ---------------------------------------------------------------------------------------------
# Finding 2: LLMDcos across depth


def thirds(n_layers: int) -> tuple[list[int], list[int]]:
    """(first, last) thirds: the first and last ⌊L/3⌋ layers."""
    k = n_layers // 3
    return list(range(k)), list(range(n_layers - k, n_layers))


def _finite_rows(values: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """Rows (sample pairs) whose values in `columns` are all finite (a zero score vector gives NaN)."""
    return np.isfinite(values[:, list(columns)]).all(axis=1)


def depth_drop(claim: str, per_pair: Sequence[Sequence[float]], *, same_domain: bool, seed: int, resamples: int = RESAMPLES) -> Assessment:
    """Finding 2 for one dataset pair: mean over sample pairs of (first-third mean − last-third mean)."""
    values = np.asarray(per_pair, dtype=np.float64)
    if values.ndim != 2:
        return cannot(claim, "LLMDcos values are not a pairs × layers table")
    first, last = thirds(values.shape[1])
    if not first:
        return cannot(claim, f"{values.shape[1]} layers; needs at least 3")
    keep = _finite_rows(values, first + last)
    drop = values[keep][:, first].mean(axis=1) - values[keep][:, last].mean(axis=1)
    detail = {
        "n_pairs": int(keep.sum()), "dropped_nan_pairs": int((~keep).sum()), "first_layers": [first[0], first[-1]], "last_layers": [last[0], last[-1]],
        "first_mean": float(values[keep][:, first].mean()) if keep.any() else None, "last_mean": float(values[keep][:, last].mean()) if keep.any() else None,
        "same_domain": same_domain,
    }
    if drop.size < MIN_SAMPLES:
        return cannot(claim, f"{drop.size} usable sample pairs; needs at least {MIN_SAMPLES}", **detail)
    low, high = bootstrap_interval((drop,), np.mean, paired=False, seed=seed, resamples=resamples)
    if not same_domain:
        verdict = interval_verdict(low, high)
    else:  # the paper: flat for the same source, so held when it falls by at most the margin
        detail["margin"] = SAME_DOMAIN_MARGIN
        verdict = HELD if high <= SAME_DOMAIN_MARGIN else NOT_HELD if low > SAME_DOMAIN_MARGIN else INCONCLUSIVE
    return Assessment(claim, verdict, float(drop.mean()), (low, high), detail=detail)


# ---------------------------------------------------------------------------------------------
# Finding 3 / Fig. 6: the similarity matrix


def _self_margin(own: np.ndarray, *others: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(own, axis=axis) - np.max(np.stack([np.mean(o, axis=axis) for o in others]), axis=0)


def self_margin(
    claim: str, own: Sequence[float], others: Mapping[str, Sequence[float]], *, seed: int, resamples: int = RESAMPLES
) -> Assessment:
    """Finding 3 for one dataset: its self-similarity minus its best other, per sample group (paired).

    `own` and each of `others` hold one value per sample group: that pair's mean LLMDcos over the
    matrix layers. Group i of every pair comes from the same scoring group, so groups are resampled
    together.
    """
    a = np.asarray(own, dtype=np.float64)
    rest = {k: np.asarray(v, dtype=np.float64) for k, v in others.items()}
    if not rest:
        return cannot(claim, "needs at least two datasets")
    keep = np.isfinite(a) & np.all([np.isfinite(v) for v in rest.values()], axis=0)
    a, rest = a[keep], {k: v[keep] for k, v in rest.items()}
    means = {k: float(v.mean()) if v.size else math.nan for k, v in rest.items()}
    best = max(means, key=lambda k: means[k])
    detail = {"self": float(a.mean()) if a.size else None, "best_other": best, "best_other_value": means[best], "n_groups": int(keep.sum())}
    if a.size < MIN_SAMPLES:
        return cannot(claim, f"{a.size} usable sample groups; needs at least {MIN_SAMPLES}", **detail)
    stat = float(_self_margin(a, *rest.values()))
    low, high = bootstrap_interval((a, *rest.values()), _self_margin, paired=True, seed=seed, resamples=resamples)
    return Assessment(claim, interval_verdict(low, high), stat, (low, high), detail=detail)


def diagonal_is_row_max(matrix: Sequence[Sequence[float]]) -> list[bool]:
    """Per row of the stored similarity matrix: is the diagonal entry strictly the largest?"""
    m = np.asarray(matrix, dtype=np.float64)
    return [bool(all(m[i, i] > m[i, j] for j in range(m.shape[1]) if j != i)) for i in range(m.shape[0])]


# ---------------------------------------------------------------------------------------------
# Validation 3: STS


def _rank_correlation(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman ρ along `axis` (average ranks for ties, as scipy.stats.spearmanr); 0 for a constant resample."""
    rx = stats.rankdata(x, axis=axis)
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    denom = np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=axis) / denom
    return np.where(denom > 0, rho, 0.0)


def sts_correlation(
    claim: str, rho: float | None, p_value: float | None, scores: Sequence[float] | None, gold: Sequence[float] | None,
    *, seed: int, resamples: int = RESAMPLES,
) -> Assessment:
    """Validation 3: held if ρ > 0 and p < 0.05; not held if the interval lies below 0."""
    detail: dict[str, Any] = {"p_value": p_value}
    interval = None
    if scores is not None and gold is not None:
        x, y = np.asarray(scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
        if x.shape != y.shape:
            return cannot(claim, f"{x.size} layer sums vs {y.size} gold scores")
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        detail["n_pairs"] = int(x.size)
        if x.size >= MIN_SAMPLES:
            recomputed = float(_rank_correlation(x, y))
            detail["recomputed_spearman"] = recomputed
            if rho is None:  # an older or partial sts.json: recompute both from the stored values
                rho, p_value = recomputed, float(stats.spearmanr(x, y).pvalue)
                detail["p_value"] = p_value
            interval = bootstrap_interval((x, y), _rank_correlation, paired=True, seed=seed, resamples=resamples)
    if rho is None or not math.isfinite(rho):
        return cannot(claim, "no Spearman ρ and no (gold, layer_sum) values to compute it from", **detail)
    if p_value is not None and math.isfinite(p_value) and rho > 0 and p_value < ALPHA:
        verdict = HELD
    elif interval is not None and interval[1] < 0:
        verdict = NOT_HELD
    else:
        verdict = INCONCLUSIVE
    reason = "" if verdict != INCONCLUSIVE or interval is not None else "no per-pair values for an interval"
    return Assessment(claim, verdict, float(rho), interval, reason=reason, detail=detail)


def _rho_difference(a: np.ndarray, b: np.ndarray, gold: np.ndarray, axis: int = -1) -> np.ndarray:
    return _rank_correlation(a, gold, axis=axis) - _rank_correlation(b, gold, axis=axis)


def rho_difference(
    scores: Sequence[float], baseline: Sequence[float], gold: Sequence[float], *, seed: int, resamples: int = RESAMPLES
) -> tuple[float, tuple[float, float]] | None:
    """ρ(scores, gold) − ρ(baseline, gold) with a paired bootstrap interval over sentence pairs (descriptive, no verdict).

    None when the three do not line up or too few pairs are finite.
    """
    x, b, y = (np.asarray(v, dtype=np.float64) for v in (scores, baseline, gold))
    if not (x.shape == b.shape == y.shape):
        return None
    keep = np.isfinite(x) & np.isfinite(b) & np.isfinite(y)
    if keep.sum() < MIN_SAMPLES:
        return None
    x, b, y = x[keep], b[keep], y[keep]
    return float(_rho_difference(x, b, y)), bootstrap_interval((x, b, y), _rho_difference, paired=True, seed=seed, resamples=resamples)


# ---------------------------------------------------------------------------------------------
# Validation 1 and 2: pruning


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value, NaN if a value is NaN or infinite), n)."""
    v = [float(x) for x in values]
    if len(v) < 2:
        std = 0.0
    elif all(math.isfinite(x) for x in v):
        std = statistics.stdev(v)
    else:  # a diverged run (perplexity inf or nan): statistics.stdev raises on non-finite values
        std = math.nan
    return statistics.fmean(v), std, len(v)


def lower_beyond_spread(claim: str, values: Sequence[float], reference: Sequence[float], name: str, missing: str) -> Assessment:
    """The Validation 1 rule: perplexities over seeds (lower is better) against a reference's; a verdict
    only when the means differ by more than the two seed spreads added, with ≥ 2 seeds each. Held:
    `values` lower; not held: higher. Statistic: mean − the reference's mean; `name` keys the reference
    in the detail (`{name}_mean`, …); `missing`: why it cannot be assessed without runs of either."""
    if not values or not reference:
        return cannot(claim, missing)
    (ma, sa, na), (mr, sr, nr) = mean_std(values), mean_std(reference)
    diff = ma - mr
    detail = {"mean": ma, "std": sa, "seeds": na, f"{name}_mean": mr, f"{name}_std": sr, f"{name}_seeds": nr, "spread": sa + sr}
    if not (math.isfinite(ma) and math.isfinite(mr)):
        return Assessment(claim, INCONCLUSIVE, diff, reason="non-finite perplexity", detail=detail)
    if min(na, nr) < 2:
        return Assessment(claim, INCONCLUSIVE, diff, reason=f"{min(na, nr)} seed", detail=detail)
    if abs(diff) <= sa + sr:
        return Assessment(claim, INCONCLUSIVE, diff, reason="difference within the seed spread", detail=detail)
    return Assessment(claim, HELD if diff < 0 else NOT_HELD, diff, detail=detail)


def versus_uniform(claim: str, method: Sequence[float], uniform: Sequence[float]) -> Assessment:
    """Validation 1 at one sparsity: a method's perplexities over seeds against uniform's (lower is better).

    A verdict only when the means differ by more than the two seed spreads added, with ≥ 2 seeds each.
    """
    return lower_beyond_spread(claim, method, uniform, "uniform", "no runs of the method or of uniform at this sparsity")


def versus_metric(claim: str, metric: Sequence[float], baseline: Sequence[float]) -> Assessment:
    """Beyond the paper, one allocation at one sparsity: a within-layer method's perplexities over seeds
    against another's with the same allocation (SparseGPT against Wanda), by the Validation 1 rule.
    Held: `metric` lower beyond the seed spread; not held: `baseline` lower beyond it."""
    return lower_beyond_spread(claim, metric, baseline, "baseline", "no runs of one of the two methods at this allocation and sparsity")


def frontier_winner(claim: str, points: Mapping[str, Sequence[float]]) -> Assessment:
    """Beyond the paper, at one sparsity: which method (allocation + metric) has the lowest mean
    perplexity, and whether its lead over the runner-up exceeds the two seed spreads added (the
    Validation 1 rule). Statistic: runner-up mean − winner mean. Held: the lead exceeds the spread
    with ≥ 2 seeds each; inconclusive otherwise (there is no "not held": some method always leads).
    """
    finite = {k: mean_std(v) for k, v in points.items() if v}
    if len(finite) < 2:
        return cannot(claim, f"needs two methods with runs, got {sorted(finite)}")
    ranked = sorted(finite.items(), key=lambda kv: (math.isnan(kv[1][0]), kv[1][0]))
    (winner, (mw, sw, nw)), (second, (ms, ss, ns)) = ranked[0], ranked[1]
    lead = ms - mw
    detail = {"winner": winner, "runner_up": second, "mean": mw, "std": sw, "seeds": nw, "runner_up_mean": ms, "runner_up_std": ss,
              "runner_up_seeds": ns, "spread": sw + ss}
    if not (math.isfinite(mw) and math.isfinite(ms)):
        return Assessment(claim, INCONCLUSIVE, lead, reason="non-finite perplexity", detail=detail)
    if min(nw, ns) < 2:
        return Assessment(claim, INCONCLUSIVE, lead, reason=f"{min(nw, ns)} seed", detail=detail)
    if lead <= sw + ss:
        return Assessment(claim, INCONCLUSIVE, lead, reason="lead within the seed spread", detail=detail)
    return Assessment(claim, HELD, lead, detail=detail)


@dataclass(frozen=True)
class Accuracy:
    """One calibration set's accuracy on one task, over calibration seeds."""

    mean: float
    se: float  # standard error: lm-eval's stderr (mean over seeds) and the seed spread, combined
    seeds: int


def accuracy(values: Sequence[float], stderrs: Sequence[float | None]) -> Accuracy:
    """Mean accuracy over seeds with se = sqrt(item_se² + seed_var / k); item_se = mean recorded stderr (0 if none).

    The item stderr is not divided by k: every seed is evaluated on the same items.
    """
    mean, std, k = mean_std(values)
    known = [s for s in stderrs if s is not None and math.isfinite(s)]
    item = statistics.fmean(known) if known else 0.0
    return Accuracy(mean, math.sqrt(item**2 + std**2 / k), k)


def calibration_advantage(claim: str, matched: Accuracy, other: Accuracy) -> Assessment:
    """Validation 2 for task C: accuracy calibrated on C minus calibrated on another set, normal 95 % interval."""
    diff = matched.mean - other.mean
    detail = {"matched": matched.mean, "other": other.mean, "matched_seeds": matched.seeds, "other_seeds": other.seeds}
    half = Z95 * math.hypot(matched.se, other.se)
    if half == 0:
        return Assessment(claim, INCONCLUSIVE, diff, reason="1 seed and no stderr recorded", detail=detail)
    low, high = diff - half, diff + half
    return Assessment(claim, interval_verdict(low, high), diff, (low, high), detail=detail)
