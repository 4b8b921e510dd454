"""The paper's allocation (Validation 1): layers with more activated parameters are pruned less."""

from __future__ import annotations

import logging

from lit_activation.models.layers import decoder_layers
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.allocations.base import Allocation
from lit_activation.pruning.allocations.counts import CountsFile, CountsSource, OnTheFlyCounts
from lit_activation.pruning.allocations.per_expert import layer_experts, spread_over_experts
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
        per_expert: a mixture of experts: each layer's sparsity spread over its experts by the same
            formula (no α term: experts have no depth), from each expert's activated parameters in a
            counts run (`counts`: a CountsFile of the model: counts.json's per-expert table).
    """

    def __init__(self, counts: CountsSource | None = None, alpha: float = 2.0, beta: float = 0.2, per_expert: bool = False) -> None:
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if per_expert and counts is not None and not isinstance(counts, CountsFile):
            raise ValueError(f"Activation per_expert: true reads each expert's counts from a counts.json (counts: CountsFile), got {type(counts).__name__}")
        self.counts = counts if counts is not None else OnTheFlyCounts()
        self.alpha, self.beta, self.per_expert = alpha, beta, per_expert
        self.resolved: list[float] | None = None  # the counts used, for the record

    def check(self, model_name: str, n_layers: int) -> None:
        if self.per_expert and not isinstance(self.counts, CountsFile):
            raise ValueError("Activation per_expert: true reads each expert's counts from a counts.json: set counts to a CountsFile of this model")
        self.counts.check(model_name, n_layers)

    def expert_sparsity(self, layer_sparsity: list[float], context: PruningContext) -> dict[str, float]:
        if not self.per_expert:
            return {}
        _, entry = self.counts.entry()
        prefix, _ = decoder_layers(context.model)
        table = (entry.get("experts") or {}).get("per_layer") or {}
        metric = {}
        for layer, experts in enumerate(layer_experts(context.model)):
            if experts and str(layer) not in table:
                raise ValueError(
                    f"counts file {self.counts.path}: no per-expert counts for MoE layer {layer}; a counts run of this mixture of experts writes them"
                )
            for key in experts:
                metric[key] = float(table[str(layer)]["activated_total"][int(key.rsplit(".", 1)[1])])
        return spread_over_experts(context.model, layer_sparsity, metric, lambda m, sizes, s: activation_sparsity(m, s, 0.0, self.beta))

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
        per_expert = {"per_expert": True} if self.per_expert else {}  # records of before the option stay as they were
        return {"method": self.label, "alpha": self.alpha, "beta": self.beta, **per_expert, "counts": self.counts.describe(), "layer_counts": self.resolved}
