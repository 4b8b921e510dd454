"""The same sparsity in every layer: Wanda's own allocation, the baseline."""

from __future__ import annotations

from lit_activation.models.layers import decoder_layers
from lit_activation.pruning.allocations.base import Allocation
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.sparsity import uniform_sparsity


class Uniform(Allocation):
    """Every decoder layer pruned to the overall sparsity."""

    def layer_sparsity(self, sparsity: float, context: PruningContext) -> list[float]:
        return uniform_sparsity(len(decoder_layers(context.model)[1]), sparsity)
