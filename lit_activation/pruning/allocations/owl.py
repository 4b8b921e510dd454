"""OWL (outlier-weighted layerwise sparsity): layers with more outlier Wanda scores keep more weights."""

from __future__ import annotations

from lit_activation.pruning.allocations.base import Allocation
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.sparsity import owl_from_ratios
from lit_activation.pruning.wanda import owl_outlier_ratios


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

    def needs_wanda_scores(self) -> bool:
        return True

    @property
    def label(self) -> str:
        return "owl"
