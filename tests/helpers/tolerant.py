"""Comparisons that stay exact where the math is exact and never depend on float rounding.

Two float computations of the same quantity (batched vs naive, 1 vs 2 processes) agree to rounding,
not bit for bit. A count at a threshold, or a histogram bin, can then only differ for a value that
sits within rounding of the threshold or of a bin edge. These helpers pick thresholds away from
every value, and allow a histogram to differ exactly by the values the independent reference puts
next to an edge (usually none, so the comparison is then exact).

"Within rounding" is scale-aware. A score is |w·g| where g sums many products: batched and naive
(padded vs unpadded rows, another summation order) differ by ~1e-5 relative on large entries but by
~1e-6 × (the module's largest value) in ABSOLUTE terms on small entries (cancellation in g). So a
value v of a module whose largest value is M is within rounding of t when

    |v - t| <= REL·|v| + ABS·M.

Values are passed as "parts": (values, M) pairs, one per module, M = that module's max |value|.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

# Measured batched (padded) vs naive per-sample scores, 6 architectures, 3 random batches: at most
# 1.8e-5 relative on entries above 0.1·M and 1.2e-6·M absolute on small ones (the worst entry uses
# 0.13 of the band below, ~8x margin). Still far below the gaps the tests rely on: a chosen
# threshold's gap (wider than the band by construction), a histogram bin (>= 2% relative).
REL = 1e-4
ABS = 1e-5

Parts = Sequence[tuple[torch.Tensor, float]]


def parts_of(means: dict[str, torch.Tensor], names: Iterable[str] | None = None) -> list[tuple[torch.Tensor, float]]:
    """(flattened fp64 values, module max |value|) for every module (or the given names)."""
    chosen = means if names is None else {n: means[n] for n in names}
    return [(m.flatten().double(), float(m.abs().max())) for m in chosen.values()]


def layer_parts(means: dict[str, torch.Tensor], layer_of: dict[str, int], n_layers: int) -> list[list[tuple[torch.Tensor, float]]]:
    """Per layer, the parts of its modules."""
    return [parts_of(means, [n for n in means if layer_of[n] == layer]) for layer in range(n_layers)]


def band(parts: Parts) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, half-width of each value's rounding band), all parts pooled, fp64."""
    values = torch.cat([v.flatten().double() for v, _ in parts])
    width = torch.cat([REL * v.flatten().double().abs() + ABS * scale for v, scale in parts])
    return values, width


def gap_threshold(parts: Parts, q: float) -> float:
    """A threshold near quantile q of all values pooled, farther from every value v than its band.

    Every value forbids [v - w, v + w]; the threshold is the middle of the first gap between those
    intervals at or above the q-quantile value, so no value (of either computation) can cross it.
    """
    v, w = band(parts)
    order = torch.argsort(v - w)
    lo, hi = (v - w)[order], torch.cummax((v + w)[order], 0).values
    k = int(q * v.numel())
    while lo[k + 1] <= hi[k]:  # k + 1's interval overlaps those before it: no room for a threshold
        k += 1
    return float((hi[k] + lo[k + 1]) / 2)


def near_threshold(parts: Parts, t: float) -> int:
    """How many values lie within their rounding band of t (the slack of a count at t)."""
    v, w = band(parts)
    return int(((v - t).abs() <= w).sum())


def edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """The upper edge (a value, not its log10) of every log10 histogram bin."""
    return 10.0 ** (lo + (hi - lo) * np.arange(1, bins + 1) / bins)


def near_edges(parts: Parts, lo: float, hi: float, bins: int) -> np.ndarray:
    """Per bin, how many positive values lie within their rounding band of the bin's upper edge.

    A value moves between bins b and b + 1 in another computation only if it is counted here at b;
    the last edge (hi) is never crossed (values above it are clamped into the last bin).
    """
    v, w = band(parts)
    keep = v > 0
    v, w = v[keep].numpy(), w[keep].numpy()
    e = edges(lo, hi, bins)
    return np.array([int((np.abs(v - x) <= w).sum()) for x in e[:-1]] + [0])


def assert_hist_close(got: Sequence[Sequence[int]], expected: Sequence[Sequence[int]], slack: Sequence[np.ndarray]) -> None:
    """Per layer: same total, and across each bin edge only the values counted near it may have moved."""
    for layer, (a, b, k) in enumerate(zip(got, expected, slack, strict=True)):
        assert sum(a) == sum(b), f"layer {layer}: {sum(a)} values vs {sum(b)}"
        moved = np.abs(np.cumsum(a) - np.cumsum(b))
        bad = np.nonzero(moved > np.asarray(k))[0]
        assert not bad.size, f"layer {layer}: {moved[bad[0]]} values crossed the upper edge of bin {bad[0]}; only {k[bad[0]]} sit near it"


def numpy_histogram(values: torch.Tensor, lo: float, hi: float, bins: int) -> list[int]:
    """The log10 histogram by numpy (values outside [lo, hi] clamped in, zeros left out)."""
    logs = np.clip(np.log10(values[values > 0].double().numpy()), lo, hi)
    return np.histogram(logs, bins=bins, range=(lo, hi))[0].tolist()


def decade_bounds(parts: Parts) -> tuple[range, range]:
    """The histogram ranges (floor log10 min, ceil log10 max of the positive values) another computation
    may give: its min lies in [min(v - w), min(v + w)], its max in [max(v - w), max(v + w)].

    Exact (one value each) unless an extreme sits within rounding of a power of ten; a tiny min with
    an absolute-scale band leaves its decade open downwards.
    """
    v, w = band(parts)
    keep = v > 0
    v, w = v[keep], w[keep]
    tiny = 1e-45  # below every positive float32

    def log10(x: torch.Tensor) -> float:
        return math.log10(max(float(x), tiny))

    lows = range(math.floor(log10((v - w).min())), math.floor(log10((v + w).min())) + 1)
    highs = range(math.ceil(log10((v - w).max())), math.ceil(log10((v + w).max())) + 1)
    return lows, highs


def assert_decades_clear(values: torch.Tensor, dist: float = 1e-6) -> None:
    """Precondition of comparing histogram ranges of two computations that differ only by relative
    rounding (~1e-7): log10 of the min and max positive values is farther than `dist` from an integer."""
    positive = values[values > 0].double()
    for what, x in (("min", positive.min()), ("max", positive.max())):
        log = math.log10(float(x))
        assert abs(log - round(log)) > dist, f"log10 of the {what} positive value is {log!r}: within {dist} of a whole decade"


def assert_distinct(values: np.ndarray, rel: float) -> None:
    """Precondition of a rank comparison: no two values within `rel` of each other (no tie to break)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    gaps = np.diff(v) / np.maximum(np.abs(v[1:]), 1e-30)
    assert gaps.min() > rel, f"fixture has near-tied values (min relative gap {gaps.min():.2e}); ranks would be fragile"
