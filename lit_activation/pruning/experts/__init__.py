"""Removing whole experts of a mixture of experts, the lowest-scored first (docs/moe.md, "Removing experts").

- options.py  ExpertPruning, the nested option `pruning.experts` (ratio, score), and the removal with its record
- scores.py   what an expert is worth: TaylorMass (a counts run), REAP, Frequency; one class each
- routing.py  the calibration pass behind REAP and Frequency: routed tokens and Σ g·‖f‖ per expert
- removal.py  which experts go (lowest scores, ties to the lower index) and the model cut down to the kept ones
- layout.py   the routing a removal must respect (experts per layer, top-k, groups) and the ratios it allows
"""

from lit_activation.public import lazy_exports

_EXPORTS = {
    "ExpertPruning": "lit_activation.pruning.experts.options", "remove_scored_experts": "lit_activation.pruning.experts.options",
    "ExpertScore": "lit_activation.pruning.experts.scores", "REAP": "lit_activation.pruning.experts.scores",
    "Frequency": "lit_activation.pruning.experts.scores", "TaylorMass": "lit_activation.pruning.experts.scores",
    "MoEShape": "lit_activation.pruning.experts.layout", "remove_experts": "lit_activation.pruning.experts.removal",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
