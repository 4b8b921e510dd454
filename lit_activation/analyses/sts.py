"""Validation 3 (paper Table 3): does deep-layer LLMDcos rank sentence pairs like human similarity?"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy import stats
from torch import Tensor

MIN_PAIRS = 3  # fewer: ρ is ±1 or undefined, and no p-value


def spearman(pred: Tensor, gold: Tensor) -> tuple[float, float]:
    """Spearman ρ (tied values get their average rank) and its two-sided p-value, both from scipy.

    scipy rather than torchmetrics: torchmetrics adds an ε to the denominator, so its ρ differs from
    the textbook value in the 7th digit, and anyone recomputing ρ from the saved values would not
    get the reported number back.
    """
    if pred.numel() != gold.numel():
        raise ValueError(f"Mismatched pair counts: {pred.numel()} predictions vs {gold.numel()} gold scores")
    n = pred.numel()
    if n < MIN_PAIRS:
        raise ValueError(f"Spearman needs at least {MIN_PAIRS} pairs, got {n}")
    if not (torch.isfinite(pred).all() and torch.isfinite(gold).all()):
        raise FloatingPointError("NaN/inf in LLMDcos or gold scores; cannot correlate")
    result = stats.spearmanr(pred.double().numpy(), gold.double().numpy())
    return float(result.statistic), float(result.pvalue)


def layer_sum(cos: Tensor, layers: Sequence[int]) -> Tensor:
    """Per pair, the sum of LLMDcos over `layers` (the paper's STS score). cos: (n_pairs, n_layers)."""
    return cos[:, list(layers)].sum(-1)


def per_layer_rho(cos: Tensor, gold: Tensor) -> list[float]:
    """ρ of every single layer's LLMDcos with the gold scores."""
    return [spearman(cos[:, layer], gold)[0] for layer in range(cos.shape[1])]


def window_sweep(cos: Tensor, gold: Tensor, width: int) -> list[tuple[int, int, float]]:
    """(first, last, ρ) of the layer-summed LLMDcos for every window of `width` consecutive layers."""
    n_layers = cos.shape[1]
    width = max(1, min(width, n_layers))
    return [
        (s, s + width - 1, spearman(layer_sum(cos, range(s, s + width)), gold)[0])
        for s in range(n_layers - width + 1)
    ]


def tied_values(values: Tensor) -> int:
    """How many values equal another value exactly (all members of each tie counted)."""
    _, counts = torch.unique(values, return_counts=True)
    return int(counts[counts > 1].sum())


def duplicate_items(items: Sequence[object]) -> int:
    """How many items equal an earlier one (hashable items, e.g. a pair's two token tuples)."""
    return len(items) - len(set(items))
