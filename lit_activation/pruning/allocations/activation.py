"""The paper's allocation (Validation 1): layers with more activated parameters are pruned less."""

from __future__ import annotations

import logging

from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.allocations.base import Allocation
from lit_activation.pruning.allocations.counts import CountsSource, OnTheFlyCounts
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.sparsity import activation_sparsity

log = logging.getLogger(__name__)


class Activation(Allocation):
    """N'_i = sigmoid((N_i − mean N) / std N + α / i);  S_i = S + β·S·(1 − N'_i·L / Σ_j N'_j).

    Args:
        counts: where the per-layer activated counts N_i come from (GivenCounts, CountsFile,
            OnTheFlyCounts: the default computes them on the dense model first).
        alpha: α, boosts the first layers (i is 1-based), so they are pruned less (paper: 2).
        beta: β, the spread of the layer sparsities around S (paper: 0.2).
    """

    def __init__(self, counts: CountsSource | None = None, alpha: float = 2.0, beta: float = 0.2) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.counts = counts if counts is not None else OnTheFlyCounts()
        self.alpha, self.beta = alpha, beta
        self.resolved: list[float] | None = None  # the counts used, for the record

    def check(self, model_name: str, n_layers: int) -> None:
        self.counts.check(model_name, n_layers)

    def layer_sparsity(self, sparsity: float, context: PruningContext) -> list[float]:
        self.resolved = [float(c) for c in self.counts.layer_counts(context)]
        if len(set(self.resolved)) == 1:
            log.warning(
                "Every layer's activated count is %g: the counts say nothing, so the layer sparsities follow α/i alone "
                "(a threshold above every score? choose a lower gamma or a quantile key)", self.resolved[0],
            )
        return activation_sparsity(self.resolved, sparsity, self.alpha, self.beta)

    def memory_needs(self, plan: PlanContext) -> Footprint:
        return self.counts.memory_needs(plan)

    def describe(self) -> dict:
        return {"method": self.label, "alpha": self.alpha, "beta": self.beta, "counts": self.counts.describe(), "layer_counts": self.resolved}
