"""Finding 1 (SPEC.md §2): how many parameters per layer have a mean activation above γ.

Inputs are mean scores per module (name -> tensor) and the module -> layer mapping; outputs are
plain lists and dicts ready for JSON. Pure PyTorch, no Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def layer_counts(means: Mapping[str, Tensor], layer_of: Mapping[str, int], n_layers: int, threshold: float) -> list[int]:
    """Per layer, the number of parameters with mean A > threshold (7 modules pooled for Llama)."""
    counts = [0] * n_layers
    for name, mean in means.items():
        counts[layer_of[name]] += int((mean > threshold).sum())
    return counts


def module_counts(
    means: Mapping[str, Tensor], layer_of: Mapping[str, int], kind_of: Mapping[str, str], n_layers: int, threshold: float
) -> dict[str, list[int]]:
    """Per module kind (e.g. 'mlp.down_proj'), per layer, the number of parameters with mean A > threshold."""
    out: dict[str, list[int]] = {}
    for name, mean in means.items():
        out.setdefault(kind_of[name], [0] * n_layers)[layer_of[name]] = int((mean > threshold).sum())
    return out


def layer_mean_scores(means: Mapping[str, Tensor], layer_of: Mapping[str, int], n_layers: int) -> list[float]:
    """Per layer, the average of mean A over all its parameters (fp64 sums)."""
    totals, sizes = [0.0] * n_layers, [0] * n_layers
    for name, mean in means.items():
        totals[layer_of[name]] += float(mean.double().sum())
        sizes[layer_of[name]] += mean.numel()
    return [t / max(1, n) for t, n in zip(totals, sizes, strict=True)]


def log10_range(means: Mapping[str, Tensor]) -> tuple[float, float]:
    """(min, max) of log10 of the positive mean scores; zeros are counted apart."""
    lo, hi = math.inf, -math.inf
    for mean in means.values():
        positive = mean[mean > 0]
        if positive.numel():
            lo, hi = min(lo, float(positive.min().log10())), max(hi, float(positive.max().log10()))
    if lo == math.inf:
        raise ValueError("Every mean score is zero: were gradients disabled?")
    return math.floor(lo), math.ceil(hi) if math.ceil(hi) > math.floor(lo) else math.floor(lo) + 1


def layer_histograms(
    means: Mapping[str, Tensor], layer_of: Mapping[str, int], n_layers: int, lo: float, hi: float, bins: int = 100
) -> Tensor:
    """(n_layers, bins) histogram of log10(mean A) over [lo, hi]; values outside are clamped in."""
    hist = torch.zeros((n_layers, bins), dtype=torch.int64)
    for name, mean in means.items():
        logs = mean[mean > 0].double().log10().clamp(lo, hi)
        idx = ((logs - lo) / (hi - lo) * bins).long().clamp(0, bins - 1)
        hist[layer_of[name]] += torch.bincount(idx.cpu(), minlength=bins)
    return hist


def zero_counts(means: Mapping[str, Tensor], layer_of: Mapping[str, int], n_layers: int) -> list[int]:
    """Per layer, the number of parameters whose mean A is exactly zero (left out of the log histogram)."""
    counts = [0] * n_layers
    for name, mean in means.items():
        counts[layer_of[name]] += int((mean == 0).sum())
    return counts


def histogram_quantiles(hist: Tensor, zeros: int, lo: float, hi: float, quantiles: Sequence[float]) -> list[float]:
    """Thresholds at quantiles of the pooled mean-A distribution, read from the log10 histogram.

    Exact sorting of every parameter (billions for a 7B model) is avoided on purpose: each threshold
    is the upper edge of the bin holding the quantile, so it is within one bin width (in log10) of
    the exact one, and the counts reported at it are exact.
    """
    pooled = hist.sum(0).double()
    total = float(pooled.sum()) + zeros
    cumulative = (torch.cumsum(pooled, 0) + zeros) / total
    width = (hi - lo) / hist.shape[1]
    out = []
    for q in quantiles:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile {q} outside (0, 1)")
        b = int(torch.searchsorted(cumulative, torch.tensor(q, dtype=torch.float64)).clamp(max=hist.shape[1] - 1))
        out.append(10 ** (lo + (b + 1) * width))
    return out
