"""Finding 1 (docs/method.md §2): how many parameters per layer have a mean activation above γ.

Inputs are mean scores per module (name -> tensor) and the module -> layer mapping; outputs are
tensors of counts and histograms, then plain lists and dicts ready for JSON. Pure PyTorch, no
Lightning. When each process holds only some rows of the means (a sharded run), every partial
result goes through `Shards`, whose sums and extrema combine the processes' parts exactly (the
counts are integers); one process uses `LOCAL`, which changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Shards:
    """How partial results from processes holding different rows are combined."""

    sum: Callable[[Tensor], Tensor] = lambda t: t
    min: Callable[[float], float] = lambda x: x
    max: Callable[[float], float] = lambda x: x


LOCAL = Shards()


def layer_counts(means: Mapping[str, Tensor], layer_of: Mapping[str, int], n_layers: int, threshold: float) -> Tensor:
    """Per layer, the number of parameters with mean A > threshold (7 modules pooled for Llama)."""
    counts = torch.zeros(n_layers, dtype=torch.int64)
    for name, mean in means.items():
        counts[layer_of[name]] += int((mean > threshold).sum())
    return counts


def module_counts(
    means: Mapping[str, Tensor], layer_of: Mapping[str, int], kind_of: Mapping[str, str], n_layers: int, threshold: float
) -> tuple[list[str], Tensor]:
    """(module kinds, counts (kinds, layers)): per kind (e.g. 'mlp.down_proj') and layer, mean A > threshold."""
    kinds = list(dict.fromkeys(kind_of[n] for n in means))
    counts = torch.zeros((len(kinds), n_layers), dtype=torch.int64)
    for name, mean in means.items():
        counts[kinds.index(kind_of[name]), layer_of[name]] = int((mean > threshold).sum())
    return kinds, counts


def layer_score_sums(means: Mapping[str, Tensor], layer_of: Mapping[str, int], n_layers: int) -> tuple[Tensor, Tensor]:
    """Per layer, (sum of mean A in fp64, number of parameters): their ratio is the layer's average."""
    totals = torch.zeros(n_layers, dtype=torch.float64)
    sizes = torch.zeros(n_layers, dtype=torch.float64)
    for name, mean in means.items():
        totals[layer_of[name]] += float(mean.double().sum())
        sizes[layer_of[name]] += mean.numel()
    return totals, sizes


def log10_extent(means: Mapping[str, Tensor]) -> tuple[float, float]:
    """(min, max) of log10 of the positive mean scores; (inf, -inf) when there are none."""
    lo, hi = math.inf, -math.inf
    for mean in means.values():
        positive = mean[mean > 0]
        if positive.numel():
            # fp64: a float32 log10 of a value within 1e-7 of a decade could floor to the wrong one
            lo, hi = min(lo, float(positive.min().double().log10())), max(hi, float(positive.max().double().log10()))
    return lo, hi


def histogram_range(lo: float, hi: float) -> tuple[int, int]:
    """Whole decades [floor(lo), ceil(hi)] around the log10 extent, at least one decade wide."""
    if lo == math.inf:
        raise ValueError("Every mean score is zero: were gradients disabled?")
    first, last = math.floor(lo), math.ceil(hi)
    return first, last if last > first else first + 1


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


def zero_counts(means: Mapping[str, Tensor], layer_of: Mapping[str, int], n_layers: int) -> Tensor:
    """Per layer, the number of parameters whose mean A is exactly zero (left out of the log histogram)."""
    counts = torch.zeros(n_layers, dtype=torch.int64)
    for name, mean in means.items():
        counts[layer_of[name]] += int((mean == 0).sum())
    return counts


def check_quantiles(quantiles: Sequence[float]) -> list[float]:
    """Quantiles must lie strictly inside (0, 1)."""
    for q in quantiles:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile {q} is outside (0, 1); accepted: values strictly between 0 and 1, e.g. [0.5, 0.9, 0.99]")
    return list(quantiles)


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
    for q in check_quantiles(quantiles):
        b = int(torch.searchsorted(cumulative, torch.tensor(q, dtype=torch.float64)).clamp(max=hist.shape[1] - 1))
        out.append(10 ** (lo + (b + 1) * width))
    return out


def dataset_summary(
    means: Mapping[str, Tensor],
    layer_of: Mapping[str, int],
    kind_of: Mapping[str, str],
    n_layers: int,
    gamma: float,
    quantiles: Sequence[float],
    bins: int = 100,
    shards: Shards = LOCAL,
) -> dict:
    """One dataset's Finding 1 results (counts at γ and at quantile thresholds, histograms), JSON-ready."""
    lo, hi = log10_extent(means)
    lo, hi = histogram_range(shards.min(lo), shards.max(hi))
    hist = shards.sum(layer_histograms(means, layer_of, n_layers, lo, hi, bins))
    zeros = shards.sum(zero_counts(means, layer_of, n_layers))
    thresholds = histogram_quantiles(hist, int(zeros.sum()), lo, hi, quantiles)
    kinds, per_module = module_counts(means, layer_of, kind_of, n_layers, gamma)
    per_module = shards.sum(per_module)
    totals, sizes = (shards.sum(t) for t in layer_score_sums(means, layer_of, n_layers))

    def counts_at(threshold: float) -> list[int]:
        return shards.sum(layer_counts(means, layer_of, n_layers, threshold)).tolist()

    return {
        "layer_counts": counts_at(gamma),
        "module_counts": dict(zip(kinds, per_module.tolist(), strict=True)),
        "quantile_counts": {f"q{q:g}": {"threshold": t, "layer_counts": counts_at(t)} for q, t in zip(quantiles, thresholds, strict=True)},
        "log10_histogram": {"lo": lo, "hi": hi, "counts": hist.tolist(), "zeros": zeros.tolist()},
        "mean_score_per_layer": (totals / sizes.clamp_min(1)).tolist(),
    }
