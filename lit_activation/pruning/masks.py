"""Which weights a row loses: the mask from scores, per output row (unstructured) or per group of m inputs (N:M),
and a linear module masked by it in place (`prune_module`, sharded or not; `decided_weight`: which of its
weights this process decides)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lit_activation.distributed.sharding import is_sharded, local, row_offset
from lit_activation.models.layers import stored_transposed, weight_out_in
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


class DecidedWeight(NamedTuple):
    """`weight`: the (out, in) weight whose entries this process decides; `stored`: this process's part
    of the module's weight as stored, where results go; `own`: the part of a tensor shaped like `weight`
    that goes there, in the stored layout; `first_row`: where `weight`'s rows start among the module's,
    when the other ranks decide the others (None: all are here)."""

    weight: Tensor
    stored: Tensor
    own: Callable[[Tensor], Tensor]
    first_row: int | None


def decided_weight(module: nn.Module) -> DecidedWeight:
    """Which weights of one linear this process decides, for a pruning method that works per output row.

    Not sharded: the whole weight. Sharded (FSDP2, dim 0 of the stored weight): a Linear (or an expert's
    slice) holds whole rows on each rank, which decides them alone; a Conv1D (or gpt-oss's transposed
    expert slice) stores (in, out), so its rows are spread over the ranks: it is gathered, decided whole
    on every rank, and each keeps its own stored rows.
    """
    weight = module.weight.detach()
    stored, offset = local(weight), row_offset(weight)
    gathered = is_sharded(weight) and stored_transposed(module)
    start, length = (offset if gathered else 0), stored.shape[0]
    decided = weight_out_in(module, weight.full_tensor() if gathered else stored)
    first_row = offset if is_sharded(weight) and not gathered else None
    return DecidedWeight(decided, stored, lambda tensor: weight_out_in(module, tensor)[start : start + length], first_row)


def prune_module(module: nn.Module, score_of: Callable[[Tensor], Tensor], sparsity: float, n: int = 0, m: int = 0) -> float:
    """Zero the lowest-scored weights of every output row of one linear, in place; returns the pruned fraction.

    score_of: the scores of a weight (out, in) given as such (a metric's, pruning/metrics), of the
    rows this process decides (`decided_weight`: on a sharded Linear, its own; every row prunes as
    many, so their fraction is the module's).
    """
    decided = decided_weight(module)
    mask = prune_mask(score_of(decided.weight), sparsity, n, m)
    decided.stored.masked_fill_(decided.own(mask), 0)
    return float(mask.float().mean())
