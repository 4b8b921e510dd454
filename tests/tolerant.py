"""Comparisons that stay exact where the math is exact and never depend on float rounding.

Two float computations of the same quantity (batched vs naive, 1 vs 2 processes) agree to a few
ulps, not bit for bit. A count at a threshold, or a histogram bin, can then only differ for a value
that sits within rounding of the threshold or of a bin edge. These helpers pick thresholds away
from every value, and allow a histogram to differ exactly by the values the independent reference
puts next to an edge (usually none, so the comparison is then exact).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

REL = 1e-5  # far above the ulp-level disagreement of two fp32 computations, far below any real gap


def gap_threshold(values: Iterable[torch.Tensor], q: float, rel: float = 1e-3) -> float:
    """A threshold near quantile q of all `values` pooled, in a gap wider than `rel` (relative)."""
    v = torch.cat([x.flatten().double() for x in values]).sort().values
    v = v[v > 0]
    k = int(q * v.numel())
    while v[k + 1] <= v[k] * (1 + rel):
        k += 1
    return float((v[k] * v[k + 1]).sqrt())


def near_edges(values: torch.Tensor, lo: float, hi: float, bins: int, rel: float = REL) -> int:
    """How many positive values lie within `rel` (relative) of a log10 histogram bin edge."""
    logs = values[values > 0].double().log10()
    position = (logs - lo) / (hi - lo) * bins  # bin edges are the integers
    tolerance = rel / math.log(10) / (hi - lo) * bins  # a relative change rel moves log10 by rel/ln 10
    return int(((position - position.round()).abs() < tolerance).sum())


def assert_hist_close(got: Sequence[Sequence[int]], expected: Sequence[Sequence[int]], slack: Sequence[int]) -> None:
    """Per layer: same total, and only `slack[layer]` values may have moved to a neighbouring bin."""
    for layer, (a, b, k) in enumerate(zip(got, expected, slack, strict=True)):
        assert sum(a) == sum(b), f"layer {layer}: {sum(a)} values vs {sum(b)}"
        moved = np.abs(np.cumsum(a) - np.cumsum(b)).max()
        assert moved <= k, f"layer {layer}: histograms differ by {moved} values; only {k} sit near an edge"


def numpy_histogram(values: torch.Tensor, lo: float, hi: float, bins: int) -> list[int]:
    """The log10 histogram by numpy (values outside [lo, hi] clamped in, zeros left out)."""
    logs = np.clip(np.log10(values[values > 0].double().numpy()), lo, hi)
    return np.histogram(logs, bins=bins, range=(lo, hi))[0].tolist()


def assert_distinct(values: np.ndarray, rel: float) -> None:
    """Precondition of a rank comparison: no two values within `rel` of each other (no tie to break)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    gaps = np.diff(v) / np.maximum(np.abs(v[1:]), 1e-30)
    assert gaps.min() > rel, f"fixture has near-tied values (min relative gap {gaps.min():.2e}); ranks would be fragile"
