"""OWL (outlier-weighted layerwise sparsity): layers with more outlier Wanda scores keep more weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_activation.distributed.sharding import local, row_offset
from lit_activation.distributed.shards import LOCAL, Shards
from lit_activation.models.experts import ExpertSlice
from lit_activation.models.layers import block_prunable, decoder_layers, stored_transposed
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.allocations.base import Allocation
from lit_activation.pruning.allocations.per_expert import spread_over_experts
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.expert_inputs import expert_key
from lit_activation.pruning.sequential import sequential_blocks
from lit_activation.pruning.sparsity import owl_from_ratios


def layer_scores(block: nn.Module, norms: dict[str, Tensor], names: list[str] | None = None) -> Tensor:
    """Every Wanda score of one block's units (or of `names` among them; this rank's rows when sharded), flattened."""
    parts = []
    units = block_prunable(block)
    for name, module in ((n, units[n]) for n in (names or units)):
        weight = local(module.weight.detach()).abs().float()
        norm = norms[name].float()
        if stored_transposed(module):  # stored (in, out) (Conv1D, gpt-oss's experts): a stored row is one input channel
            start = row_offset(module.weight)
            parts.append((weight * norm[start : start + weight.shape[0], None]).flatten())
        else:
            parts.append((weight * norm[None, :]).flatten())
    return torch.cat(parts)


def outlier_ratio(scores: Tensor, m: float, shards: Shards = LOCAL) -> float:
    """The share of `scores` above m × their mean; a sharded model forms the mean and the count from its
    shards' sums (`shards`)."""
    total = shards.sum(torch.tensor([float(scores.double().sum()), float(scores.numel())], dtype=torch.float64))
    threshold = m * total[0] / total[1]
    above = shards.sum(torch.tensor([float((scores.double() > threshold).sum())], dtype=torch.float64))
    return float(above[0] / total[1])


@torch.no_grad()
def owl_outlier_ratios(
    model: nn.Module, calibration_ids: Tensor, m: float = 5.0, batch_size: int = 1, shards: Shards = LOCAL, experts: dict[str, float] | None = None,
) -> list[float]:
    """OWL's per-layer outlier ratio on the dense model (sequential), one layer's scores in memory at a time:
    the share of a layer's Wanda scores above m × their mean. `experts`: also each expert's own ratio,
    over its slices' scores (`<experts module>.<e>` -> ratio), for a per-expert allocation."""
    ratios: list[float] = []
    prefix, _ = decoder_layers(model)

    def visit(index: int, block: nn.Module, norms: dict[str, Tensor]) -> None:
        ratios.append(outlier_ratio(layer_scores(block, norms), m, shards))
        if experts is not None:
            grouped: dict[str, list[str]] = {}
            for name, unit in block_prunable(block).items():
                if isinstance(unit, ExpertSlice):
                    grouped.setdefault(expert_key(name), []).append(name)
            for key, names in grouped.items():
                experts[f"{prefix}.{index}.{key}"] = outlier_ratio(layer_scores(block, norms, names), m, shards)

    sequential_blocks(model, calibration_ids, visit, batch_size)
    return ratios


class OWL(Allocation):
    """Per layer, the fraction of Wanda scores above m × the layer's mean, min-max scaled to [0, 2·lam],
    mean-centred; a layer's density is that plus 1 − S.

    Args:
        m: outlier threshold, in multiples of the layer's mean score (OWL's M = 5).
        lam: half the spread of the layer sparsities (OWL's λ = 0.08). Cost: one sequential pass
            of the calibration batch through the dense model before pruning.
        per_expert: a mixture of experts: each layer's sparsity spread over its experts by their own
            outlier ratios (each expert's Wanda scores from its routed tokens, against its own mean).
    """

    def __init__(self, m: float = 5.0, lam: float = 0.08, per_expert: bool = False) -> None:
        if m <= 0 or lam < 0:
            raise ValueError(f"OWL needs m > 0 and lam >= 0, got m={m}, lam={lam}")
        self.m, self.lam, self.per_expert = m, lam, per_expert
        self._expert_ratios: dict[str, float] = {}

    def layer_sparsity(self, sparsity: float, context: PruningContext) -> list[float]:
        self._expert_ratios = {}
        experts = self._expert_ratios if self.per_expert else None
        ratios = owl_outlier_ratios(context.model, context.calibration_ids, self.m, context.batch_size, context.shards, experts)
        return owl_from_ratios(ratios, sparsity, self.lam)

    def expert_sparsity(self, layer_sparsity: list[float], context: PruningContext) -> dict[str, float]:
        if not self.per_expert:
            return {}
        return spread_over_experts(context.model, layer_sparsity, self._expert_ratios, lambda m, sizes, s: owl_from_ratios(m, s, self.lam))

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """One block's Wanda scores (a rank's rows) in fp32, with the fp64 copies its exact mean and
        count are formed from, while the block's calibration inputs are held."""
        return Footprint().add("pruning", "OWL scores of one block", plan.params.block * (4 + 8) // plan.shards)

    @property
    def label(self) -> str:
        return "owl"
