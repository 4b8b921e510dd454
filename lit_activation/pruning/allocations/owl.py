"""OWL (outlier-weighted layerwise sparsity): layers with more outlier Wanda scores keep more weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_activation.distributed.sharding import local, row_offset
from lit_activation.distributed.shards import LOCAL, Shards
from lit_activation.models.layers import block_prunable, stored_transposed
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.allocations.base import Allocation
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.sequential import sequential_blocks
from lit_activation.pruning.sparsity import owl_from_ratios


def layer_scores(block: nn.Module, norms: dict[str, Tensor]) -> Tensor:
    """Every Wanda score of one block's linear modules (this rank's rows when sharded), flattened."""
    parts = []
    for name, module in block_prunable(block).items():
        weight = local(module.weight.detach()).abs().float()
        norm = norms[name].float()
        if stored_transposed(module):  # stored (in, out) (Conv1D, gpt-oss's experts): a stored row is one input channel
            start = row_offset(module.weight)
            parts.append((weight * norm[start : start + weight.shape[0], None]).flatten())
        else:
            parts.append((weight * norm[None, :]).flatten())
    return torch.cat(parts)


@torch.no_grad()
def owl_outlier_ratios(model: nn.Module, calibration_ids: Tensor, m: float = 5.0, batch_size: int = 1, shards: Shards = LOCAL) -> list[float]:
    """OWL's per-layer outlier ratio on the dense model (sequential), one layer's scores in memory at a time.

    The ratio is the share of a layer's Wanda scores above m × their mean; a sharded model forms
    the mean and the count from its shards' sums (`shards`).
    """
    ratios: list[float] = []

    def visit(index: int, block: nn.Module, norms: dict[str, Tensor]) -> None:
        scores = layer_scores(block, norms)
        total = shards.sum(torch.tensor([float(scores.double().sum()), float(scores.numel())], dtype=torch.float64))
        threshold = m * total[0] / total[1]
        above = shards.sum(torch.tensor([float((scores.double() > threshold).sum())], dtype=torch.float64))
        ratios.append(float(above[0] / total[1]))

    sequential_blocks(model, calibration_ids, visit, batch_size)
    return ratios


class OWL(Allocation):
    """Per layer, the fraction of Wanda scores above m × the layer's mean, min-max scaled to [0, 2·lam],
    mean-centred; a layer's density is that plus 1 − S.

    Args:
        m: outlier threshold, in multiples of the layer's mean score (OWL's M = 5).
        lam: half the spread of the layer sparsities (OWL's λ = 0.08). Cost: one sequential pass
            of the calibration batch through the dense model before pruning.
    """

    def __init__(self, m: float = 5.0, lam: float = 0.08) -> None:
        if m <= 0 or lam < 0:
            raise ValueError(f"OWL needs m > 0 and lam >= 0, got m={m}, lam={lam}")
        self.m, self.lam = m, lam

    def layer_sparsity(self, sparsity: float, context: PruningContext) -> list[float]:
        ratios = owl_outlier_ratios(context.model, context.calibration_ids, self.m, context.batch_size, context.shards)
        return owl_from_ratios(ratios, sparsity, self.lam)

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """One block's Wanda scores (a rank's rows) in fp32, with the fp64 copies its exact mean and
        count are formed from, while the block's calibration inputs are held."""
        return Footprint().add("pruning", "OWL scores of one block", plan.params.block * (4 + 8) // plan.shards)

    @property
    def label(self) -> str:
        return "owl"
