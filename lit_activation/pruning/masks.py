"""Which weights a row loses: the mask from scores, per output row (unstructured) or per group of m inputs (N:M),
and a linear module masked by it in place (`prune_module`, sharded or not)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from lit_activation.distributed.sharding import is_sharded, local, row_offset
from lit_activation.models.layers import weight_out_in
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


def prune_module(module: nn.Module, score_of: Callable[[Tensor], Tensor], sparsity: float, n: int = 0, m: int = 0) -> float:
    """Zero the lowest-scored weights of every output row of one linear, in place; returns the pruned fraction.

    score_of: the scores of a weight (out, in) given as such (a metric's, pruning/metrics). A
    sharded weight (FSDP2) holds whole rows of a Linear on each rank: its mask is formed there. A
    Conv1D stores (in, out), so its rows are spread over the ranks: it is gathered, per module.
    """
    weight = module.weight.detach()
    part = local(weight)
    if not is_sharded(weight) or isinstance(module, Conv1D):
        full = weight.full_tensor() if is_sharded(weight) else weight
        mask = prune_mask(score_of(weight_out_in(module, full)), sparsity, n, m)
        mask = mask.t() if isinstance(module, Conv1D) else mask  # back to the stored layout
        start = row_offset(weight)
        part.masked_fill_(mask[start : start + part.shape[0]], 0)
        return float(mask.float().mean())
    mask = prune_mask(score_of(part), sparsity, n, m)
    part.masked_fill_(mask, 0)
    return float(mask.float().mean())  # every row prunes as many: this rank's fraction is the module's
