"""What every layer-wise sparsity allocation is: a class with its own options (docs/method.md §4).

A new method is one subclass in one file of this package, selected in YAML by `class_path`:

    pruning:
      allocation:
        class_path: lit_activation.pruning.allocations.OWL
        init_args: {m: 5.0, lam: 0.08}
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.context import PruningContext


class Allocation(ABC):
    """How an overall sparsity S is spread over the L decoder layers: one sparsity per layer,
    whose mean is S. Subclasses take their own constants as constructor arguments.

    In a mixture of experts, an allocation with `per_expert` also spreads each layer's sparsity over
    the layer's experts (`expert_sparsity`): their parameter-weighted mean is the layer's, so the
    target is still met over all weights; the layer's other weights keep the layer's sparsity.
    """

    per_expert: bool = False

    def check(self, model_name: str, n_layers: int) -> None:
        """Fail before any work (no weights loaded yet) if the allocation cannot apply to this model."""

    def check_experts(self, model_name: str, moe: bool) -> None:
        """A per-expert allocation needs experts: refused in one line on a dense model."""
        if self.per_expert and not moe:
            raise ValueError(f"{type(self).__name__} per_expert: true needs a mixture of experts; {model_name} is dense (accepted here: per_expert false)")

    def expert_sparsity(self, layer_sparsity: list[float], context: PruningContext) -> dict[str, float]:
        """Per expert (`<experts module>.<e>`, full name), its sparsity: {} unless `per_expert`. Called
        after `layer_sparsity`, on the dense model."""
        return {}

    @abstractmethod
    def layer_sparsity(self, sparsity: float, context: PruningContext) -> list[float]:
        """One sparsity per decoder layer for the overall `sparsity`, computed on the dense model."""

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """What computing the layer sparsities adds to memory (the plan): nothing by default."""
        return Footprint()

    @property
    def label(self) -> str:
        """Short name in records and tables: the class name, lower case."""
        return type(self).__name__.lower()

    def describe(self) -> dict:
        """JSON-ready record of the method and its constants."""
        options = {k: v for k, v in vars(self).items() if not k.startswith("_") and not (k == "per_expert" and not v)}  # as before per_expert
        return {"method": self.label, **options}
