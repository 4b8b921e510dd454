"""Per-expert allocations in a mixture of experts: each layer's sparsity spread over its experts.

The layer sparsity S_l comes first, from the allocation over layers. Within layer l, the allocation's
own formula is applied again, to the layer's experts instead of the model's layers, from a metric per
expert (its activated parameters, its outlier ratio, its spectra): S_{l,e}, whose mean over the
layer's equal-sized experts is S_l, so the target stays met over all weights. The layer's other
weights (attention, shared experts, routers) keep S_l.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from lit_activation.models.experts import ExpertSlice
from lit_activation.models.layers import block_prunable, decoder_layers, weight_shape
from lit_activation.pruning.expert_inputs import expert_key

# spread(metrics of a layer's experts, their sizes, the layer's sparsity) -> their sparsities
Spread = Callable[[list[float], list[int], float], list[float]]


def layer_experts(model: nn.Module) -> list[dict[str, list[ExpertSlice]]]:
    """Per decoder layer, its experts (`<experts module>.<e>`, full names) and each one's slices."""
    prefix, layers = decoder_layers(model)
    out = []
    for index, block in enumerate(layers):
        experts: dict[str, list[ExpertSlice]] = {}
        for name, unit in block_prunable(block).items():
            if isinstance(unit, ExpertSlice):
                experts.setdefault(expert_key(f"{prefix}.{index}.{name}"), []).append(unit)
        out.append(experts)
    return out


def spread_over_experts(model: nn.Module, layer_sparsity: list[float], metric: Mapping[str, float], spread: Spread) -> dict[str, float]:
    """Each expert's sparsity: per layer, `spread` applied to its experts' metrics at the layer's sparsity."""
    out: dict[str, float] = {}
    for layer, experts in enumerate(layer_experts(model)):
        if not experts:
            continue  # a dense layer (DeepSeek's first ones)
        keys = list(experts)
        sizes = [sum(weight_shape(u).numel() for u in experts[k]) for k in keys]
        out.update(zip(keys, spread([metric[k] for k in keys], sizes, layer_sparsity[layer]), strict=True))
    return out
