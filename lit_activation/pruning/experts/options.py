"""`pruning.experts`: whole experts removed by their score, before any weight is pruned (docs/moe.md, "Removing experts").

Two-stage pruning is the composition of the two options: the experts go first, then `pruning.sparsity`
prunes the weights of what is left (the kept experts included) on the same calibration batch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from jsonargparse import lazy_instance
from torch import Tensor, nn

from lit_activation.models.layers import num_layers_of
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.experts.layout import MoEShape, check_ratio, check_removal, removed_count
from lit_activation.pruning.experts.removal import expert_parameters, lowest_experts, remove_experts
from lit_activation.pruning.experts.routing import routed_statistics
from lit_activation.pruning.experts.scores import REAP, ExpertScore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpertPruning:
    """Whole experts removed from every MoE layer, those with the lowest score first: ⌊ratio·E⌋ of each
    layer's E, the same number in every MoE layer (a Hugging Face config holds one expert count), ties
    to the lower expert index first.

    Attributes:
        ratio: the fraction of each MoE layer's experts removed, in [0, 1); 0 removes none.
        score: which experts go: the lowest `REAP`, `Frequency` or `TaylorMass` (class_path).
    """

    ratio: float = 0.0
    score: ExpertScore = lazy_instance(REAP)  # jsonargparse's default for a class_path option, shown by its name

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        if not isinstance(self.score, ExpertScore):
            raise ValueError(f"experts.score {self.score!r} is not an expert score; accepted: REAP, Frequency, TaylorMass (lit_activation.pruning.experts)")

    @property
    def removes(self) -> bool:
        """Whether any expert is to go (ratio > 0)."""
        return self.ratio > 0

    @property
    def calibrated(self) -> bool:
        """Whether the removal reads the calibration batch (REAP, Frequency)."""
        return self.removes and self.score.calibrated

    def check(self, model_name: str, n_layers: int, shape: MoEShape | None) -> int:
        """Refuse, before any work, a removal that cannot be: on a dense model, a ratio the routing does not
        allow, a score that cannot be had. Returns the experts kept per MoE layer."""
        if shape is None:
            raise ValueError(
                f"{model_name} has no experts to remove (a dense model): experts.ratio {self.ratio} applies to a mixture of experts; accepted here: 0"
            )
        kept = check_removal(self.ratio, shape, model_name)
        self.score.check(model_name, n_layers, shape)
        return kept

    def memory_needs(self, plan: PlanContext, calibration: Any) -> Footprint:  # noqa: ANN401 - a Calibration (context.py imports this module's users)
        """What scoring the experts adds (the plan): one block's calibration activations at a time, as pruning."""
        if not self.calibrated:
            return Footprint()
        from lit_activation.pruning.sequential import calibration_peak

        c = calibration
        return Footprint().add("expert scores", "calibration (block in/out, args)", plan.peak(calibration_peak, c.samples, c.seqlen, c.batch_size))

    def describe(self) -> dict:
        """JSON-ready record of the options."""
        return {"ratio": self.ratio, "score": self.score.describe()}


def remove_scored_experts(model: nn.Module, options: ExpertPruning, calibration_ids: Tensor | None, batch_size: int, model_name: str) -> dict:
    """Score every expert of `model`, remove the lowest ⌊ratio·E⌋ of each MoE layer in place, and return the record
    (pruning.json's `experts`): the options, the counts, and per MoE layer the removed and kept experts (original
    indices) with every expert's score."""
    shape = MoEShape.of(model)
    options.check(model_name, num_layers_of(model.config), shape)
    assert shape is not None  # check refused a dense model
    routed = None
    if options.score.calibrated:
        if calibration_ids is None:
            raise ValueError(f"experts.score {options.score.label} reads the calibration batch; none was given")
        routed = routed_statistics(model, calibration_ids, batch_size, list(shape.layers), shape.experts)
    scores = options.score.scores(shape, routed)
    if not bool(scores.isfinite().all()):
        raise ValueError(f"experts.score {options.score.label} gave a score that is not finite; no expert was removed")
    count = removed_count(options.ratio, shape.experts)
    removed = {layer: lowest_experts(scores[row].tolist(), count, shape.groups) for row, layer in enumerate(shape.layers)}
    before, experts_before = sum(p.numel() for p in model.parameters()), expert_parameters(model, shape.layers)
    remove_experts(model, removed)
    after, experts_after = sum(p.numel() for p in model.parameters()), expert_parameters(model, shape.layers)
    per_layer = {}
    for row, layer in enumerate(shape.layers):
        entry: dict[str, Any] = {
            "removed": removed[layer], "kept": [e for e in range(shape.experts) if e not in removed[layer]], "scores": scores[row].tolist(),
        }
        if routed is not None:
            entry["routed_tokens"] = routed.tokens[row].tolist()
        per_layer[str(layer)] = entry
    if count == 0:
        log.warning("experts.ratio %s removes no expert: ⌊%s × %d⌋ = 0 of each MoE layer's %d", options.ratio, options.ratio, shape.experts, shape.experts)
    log.info(
        "Experts: %d of %d removed from each of %d MoE layers (%s); parameters %d -> %d",
        count, shape.experts, len(shape.layers), options.score.label, before, after,
    )
    return {
        **options.describe(), "experts_before": shape.experts, "experts_after": shape.experts - count, "top_k": shape.top_k,
        "groups": shape.groups, "ties": "lower expert index removed first", "moe_layers": list(shape.layers),
        "parameters_before": before, "parameters_after": after, "expert_parameters_before": experts_before, "expert_parameters_after": experts_after,
        "parameters_removed_fraction": (before - after) / before if before else math.nan, "per_layer": per_layer,
    }
