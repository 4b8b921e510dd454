"""Which weights a row loses: the mask from scores, per output row (unstructured) or per group of m inputs (N:M)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_activation.pruning.sparsity import check_nm


def prune_mask(score: Tensor, sparsity: float, n: int = 0, m: int = 0) -> Tensor:
    """Boolean mask (True = set to zero) from the scores of a weight of shape (out, in).

    Unstructured: in every output row the ⌊in · sparsity⌋ lowest scores are pruned. N:M (n, m > 0):
    in every group of m consecutive inputs of a row, the n lowest. Ties: the sort is stable, so
    among equal scores the LOWER input index is pruned first — deterministic, which matters for
    dequantized (GGUF) weights where equal magnitudes are common.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"Sparsity {sparsity} is outside [0, 1)")
    check_nm(sparsity, n, m)
    out_features, in_features = score.shape
    mask = torch.zeros_like(score, dtype=torch.bool)
    if m:
        if in_features % m:
            raise ValueError(f"N:M with m={m} needs in_features divisible by m, got {in_features}")
        grouped = score.reshape(out_features, in_features // m, m)
        order = grouped.argsort(dim=-1, stable=True)[..., :n]
        mask.view(out_features, in_features // m, m).scatter_(-1, order, True)
        return mask
    k = int(in_features * sparsity)
    if k:
        mask.scatter_(1, score.argsort(dim=1, stable=True)[:, :k], True)
    return mask


def wanda_mask(weight: Tensor, input_norm: Tensor, sparsity: float, n: int = 0, m: int = 0) -> Tensor:
    """`prune_mask` of Wanda's scores S_jk = |W_jk| · ‖X_k‖₂ (input_norm = ones: magnitude pruning)."""
    if input_norm.shape != (weight.shape[1],):
        raise ValueError(f"input_norm has shape {tuple(input_norm.shape)}; expected ({weight.shape[1]},)")
    return prune_mask(weight.detach().abs().float() * input_norm.float()[None, :], sparsity, n, m)
