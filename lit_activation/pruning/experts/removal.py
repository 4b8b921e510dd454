"""Removing whole experts: which ones go (the lowest scores), and the model cut down to the ones kept.

A removed expert's slices of every fused tensor and of its biases go, and so do its router row (and
gpt-oss's router bias, DeepSeek-V3's score-correction bias). The router then computes logits for the kept
experts only: its softmax (or sigmoid) and top-k run over them, which is the original router with the
removed experts' logits at -inf. The config's expert count is set to the kept count, so the model saves
with `save_pretrained` and loads again with `from_pretrained`; kept experts are renumbered 0..K-1 in
their original order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from lit_activation.models.experts import experts_modules, routers
from lit_activation.models.layers import decoder_layers, text_config
from lit_activation.pruning.experts.layout import MoEShape

# What the families name the routed expert count in their config (aliases of one another in some).
EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")


def lowest_experts(scores: Sequence[float], count: int, groups: int = 1) -> list[int]:
    """The `count` experts with the lowest scores, ascending by index; ties go to the lower index first.

    With group-limited routing (`groups` > 1) each contiguous group loses count/groups of its own
    lowest, so that every kept expert stays in its group.
    """
    size = len(scores) // groups
    removed = []
    for group in range(groups):
        members = range(group * size, (group + 1) * size)
        removed += sorted(members, key=lambda e: (scores[e], e))[: count // groups]
    return sorted(removed)


def _keep_rows(module: nn.Module, keep: Tensor, experts: int) -> None:
    """Keep the rows `keep` of every parameter and buffer of `module` itself whose first dimension is its experts."""
    for name, param in list(module.named_parameters(recurse=False)):
        if param.dim() >= 1 and param.shape[0] == experts:
            setattr(module, name, nn.Parameter(param.detach().index_select(0, keep.to(param.device)), requires_grad=param.requires_grad))
    for name, buffer in list(module.named_buffers(recurse=False)):
        if buffer is not None and buffer.dim() >= 1 and buffer.shape[0] == experts:
            setattr(module, name, buffer.index_select(0, keep.to(buffer.device)))  # still a buffer, as persistent as before


def remove_experts(model: nn.Module, removed: Mapping[int, Sequence[int]]) -> None:
    """Remove the experts `removed[layer]` (original indices) of every MoE layer of `model`, in place.

    Every MoE layer is named and loses the same number (the config holds one count), fewer than all.
    """
    shape = MoEShape.of(model)
    if shape is None or set(removed) != set(shape.layers):
        raise ValueError(f"removed names layers {sorted(removed)}; the model's MoE layers are {list(shape.layers) if shape else []}: name each once")
    experts = shape.experts
    counts = {len(set(gone)) for gone in removed.values()}
    bad = [e for gone in removed.values() for e in gone if not 0 <= e < experts]
    if len(counts) != 1 or bad or counts == {experts}:
        raise ValueError(f"every MoE layer must lose the same number of experts, fewer than its {experts} (one count in the config); got {dict(removed)}")
    kept = experts - counts.pop()
    _, blocks = decoder_layers(model)
    with torch.no_grad():
        for layer, gone in removed.items():
            keep = torch.tensor(sorted(set(range(experts)) - set(gone)), dtype=torch.long)
            block = blocks[layer]
            for module in [m for m, _ in experts_modules(block).values()] + list(routers(block).values()):
                _keep_rows(module, keep, experts)
                module.num_experts = kept
    set_expert_count(model.config, experts, kept)


def set_expert_count(config: object, experts: int, kept: int) -> None:
    """Set the config's routed expert count (whichever of EXPERT_COUNT_KEYS it names it by) from `experts` to `kept`."""
    text = text_config(config)
    keys = [key for key in EXPERT_COUNT_KEYS if getattr(text, key, None) == experts]
    if not keys:
        raise ValueError(
            f"{type(text).__name__} names no expert count {experts} among {EXPERT_COUNT_KEYS}: the model could not be saved with its experts removed"
        )
    for key in keys:
        setattr(text, key, kept)


def expert_parameters(model: nn.Module, layers: Sequence[int]) -> int:
    """Parameters of the fused experts and routers (biases included) of the MoE layers `layers`."""
    _, blocks = decoder_layers(model)
    total = 0
    for layer in layers:
        modules = [m for m, _ in experts_modules(blocks[layer]).values()] + list(routers(blocks[layer]).values())
        total += sum(p.numel() for m in modules for p in m.parameters(recurse=False))
    return total
