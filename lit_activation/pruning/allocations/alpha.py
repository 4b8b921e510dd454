"""AlphaPruning (Lu et al., NeurIPS 2024): layer sparsity from the heavy-tailed spectra of the weights."""

from __future__ import annotations

from typing import Literal

from lit_activation.distributed.sharding import is_sharded
from lit_activation.models.experts import ExpertSlice
from lit_activation.models.layers import block_prunable, decoder_layers, weight_out_in
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.allocations.base import Allocation
from lit_activation.pruning.allocations.per_expert import spread_over_experts
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.expert_inputs import expert_key
from lit_activation.pruning.sparsity import XMIN, alpha_sparsity, esd_alpha


class AlphaPruning(Allocation):
    """Per block, the sum of its linear weights' power-law exponents α (Hill estimator on the
    eigenvalues of WᵀW); blocks mapped linearly onto [1 − ε, 1 + ε] (higher α, less trained: more
    sparsity), then scaled so that the parameter-weighted mean sparsity is the target. Data-free.

    Args:
        epsilon: ε, half the spread of the ratios (AlphaPruning's default 0.3; its LLaMA scripts use
            0.2-0.5 by model and pruning method).
        xmin: where the fitted tail starts: `mid`, the median eigenvalue; `peak` (what AlphaPruning's
            LLaMA scripts use), the candidate near the density peak of the log10 eigenvalues whose
            power law is closest to the tail by the KS distance (sparsity.peak_fit).
        per_expert: a mixture of experts: each layer's sparsity spread over its experts by the same
            mapping of their own α (the mean over each expert's slices).
    A layer sparsity outside [0, 1) is refused: lower the target or ε.
    Cost: one SVD per linear weight (fp32, one weight at a time; a sharded weight is gathered for it);
    `peak` adds one tail fit per candidate xmin (O(N) each, N singular values).
    """

    def __init__(self, epsilon: float = 0.3, xmin: Literal["mid", "peak"] = "mid", per_expert: bool = False) -> None:
        if not 0 <= epsilon < 1:
            raise ValueError(f"AlphaPruning epsilon must be in [0, 1), got {epsilon}")
        if xmin not in XMIN:
            raise ValueError(f"AlphaPruning xmin {xmin!r} is not supported; accepted: 'mid', 'peak'")
        self.epsilon, self.xmin, self.per_expert = epsilon, xmin, per_expert
        self.block_alphas: list[float] | None = None  # what the allocation used, for the record
        self._expert_alphas: dict[str, list[float]] = {}

    def layer_sparsity(self, sparsity: float, context: PruningContext) -> list[float]:
        metrics, sizes, counts = [], [], []
        self._expert_alphas = {}
        prefix, layers = decoder_layers(context.model)
        for index, block in enumerate(layers):
            total, params = 0.0, 0
            units = block_prunable(block)  # a mixture of experts: each expert's slices too
            for name, module in units.items():
                weight = module.weight.full_tensor() if is_sharded(module.weight) else module.weight
                alpha = esd_alpha(weight_out_in(module, weight), self.xmin)
                total += alpha
                params += weight.numel()
                if isinstance(module, ExpertSlice):
                    self._expert_alphas.setdefault(expert_key(f"{prefix}.{index}.{name}"), []).append(alpha)
            metrics.append(total)
            sizes.append(params)
            counts.append(len(units))
        # blocks of different module counts (DeepSeek's dense first layers among MoE ones) compared on
        # the largest count's basis, i.e. by their mean α; equal counts keep the sum exactly
        metrics = [total * (max(counts) / count) if count != max(counts) else total for total, count in zip(metrics, counts, strict=True)]
        self.block_alphas = metrics
        return alpha_sparsity(metrics, sizes, sparsity, self.epsilon)

    def expert_sparsity(self, layer_sparsity: list[float], context: PruningContext) -> dict[str, float]:
        if not self.per_expert:
            return {}
        mean_alpha = {key: sum(values) / len(values) for key, values in self._expert_alphas.items()}
        return spread_over_experts(context.model, layer_sparsity, mean_alpha, lambda m, sizes, s: alpha_sparsity(m, sizes, s, self.epsilon))

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """The singular values of one weight at a time: its fp32 copy and LAPACK's copy of it (a
        sharded weight is gathered whole for it)."""
        return Footprint().add("pruning", "AlphaPruning SVD of one weight", 2 * plan.params.largest_scored * 4)

    @property
    def label(self) -> str:
        return "alphapruning"
