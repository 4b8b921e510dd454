"""How many experts a mixture of experts has and how its routers choose them, and which removal ratios it allows.

Every MoE layer of a Hugging Face model has the same number of experts (its config holds one count), so
a removal takes the same number ⌊ratio·E⌋ from every MoE layer. The routers' own attributes say how
tokens are routed: `top_k` experts per token, and, in DeepSeek-V3's group-limited routing, the experts
split into `num_group` contiguous groups of which `topk_group` are chosen first, each scored by the sum
of its two best experts. A ratio is refused, in one line naming it and what is accepted, when the
routers could not route over the kept experts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig

from lit_activation.models.experts import experts_modules, routers
from lit_activation.models.layers import decoder_layers

GROUP_SCORE_EXPERTS = 2  # DeepSeek-V3's router scores a group by the sum of its 2 best experts
_EPSILON = 1e-9  # ratio·E is read as the integer it is meant to be: 0.29 × 100 is 28.999999999999996 in floats


@dataclass(frozen=True)
class MoEShape:
    """A mixture of experts' routing, as its routers hold it.

    Attributes:
        layers: the decoder layers that have experts (DeepSeek-V3's first layers are dense).
        experts: E, the routed experts of each of them.
        top_k: experts per token.
        groups: contiguous expert groups of a group-limited router (1: none).
        top_groups: groups each token may choose from.
    """

    layers: tuple[int, ...]
    experts: int
    top_k: int
    groups: int = 1
    top_groups: int = 1

    @staticmethod
    def of(model: nn.Module) -> MoEShape | None:
        """The shape of `model`'s mixture of experts (real or fake tensors), or None for a dense model."""
        _, blocks = decoder_layers(model)
        layers, shapes = [], set()
        for index, block in enumerate(blocks):
            found = routers(block)
            if not experts_modules(block) or not found:
                continue
            layers.append(index)
            for router in found.values():
                groups = int(getattr(router, "num_group", None) or getattr(router, "n_group", None) or 1)
                top_groups = int(getattr(router, "topk_group", None) or groups) if groups > 1 else 1
                shapes.add((int(router.num_experts), int(router.top_k), groups, top_groups))
        if not layers:
            return None
        if len(shapes) != 1:
            raise ValueError(f"{type(model).__name__}'s MoE layers route differently ({sorted(shapes)}); expert removal needs one expert count for the config")
        (experts, top_k, groups, top_groups) = shapes.pop()
        return MoEShape(tuple(layers), experts, top_k, groups, top_groups)

    @staticmethod
    def of_config(config: PretrainedConfig, trust_remote_code: bool = False) -> MoEShape | None:
        """The shape read from a fake-tensor model of `config`: no weights, no memory (checks before loading)."""
        from torch._subclasses.fake_tensor import FakeTensorMode

        from lit_activation.models.architectures import fake_model

        return MoEShape.of(fake_model(config, torch.float32, FakeTensorMode(), trust_remote_code))


def removed_count(ratio: float, experts: int) -> int:
    """⌊ratio·E⌋: how many experts a MoE layer of E experts loses."""
    return math.floor(ratio * experts + _EPSILON)


def check_ratio(ratio: float) -> None:
    """The ratio alone: in [0, 1), one line otherwise."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
        raise ValueError(f"experts.ratio {ratio!r} is not a number; accepted: a fraction of each MoE layer's experts in [0, 1)")
    if ratio >= 1:
        raise ValueError(f"experts.ratio {ratio} would remove every expert of each MoE layer; accepted: [0, 1), e.g. 0.25 removes a quarter")
    if ratio < 0:
        raise ValueError(f"experts.ratio {ratio} is outside [0, 1): 0 keeps every expert, 0.25 removes a quarter of each MoE layer's")


def check_removal(ratio: float, shape: MoEShape, model_name: str) -> int:
    """The ratio against the model's routing; returns the experts each MoE layer keeps. Refused in one line:
    a ratio outside [0, 1), a top-k larger than the kept experts, and with group-limited routing a kept
    count the groups do not divide, groups left with fewer than 2 experts, or chosen groups too small for top-k."""
    check_ratio(ratio)
    kept = shape.experts - removed_count(ratio, shape.experts)
    if kept == 0:
        raise ValueError(
            f"experts.ratio {ratio} removes all {shape.experts} experts of each MoE layer of {model_name}; accepted: a ratio that keeps at least {shape.top_k}"
        )
    if shape.top_k > kept:
        largest = (shape.experts - shape.top_k) / shape.experts
        raise ValueError(
            f"experts.ratio {ratio} keeps {kept} of {model_name}'s {shape.experts} experts per MoE layer, fewer than the {shape.top_k} each token "
            f"is routed to (top-k); accepted: a ratio that keeps at least {shape.top_k} (at most {largest:g})"
        )
    if shape.groups > 1:
        per_group = kept // shape.groups
        if kept % shape.groups:
            raise ValueError(
                f"experts.ratio {ratio} keeps {kept} of {model_name}'s {shape.experts} experts per MoE layer; its router chooses among {shape.groups} "
                f"groups of experts (n_group), which must divide the kept count: accepted ratios remove a multiple of {shape.groups} experts"
            )
        if per_group < GROUP_SCORE_EXPERTS:
            raise ValueError(
                f"experts.ratio {ratio} leaves {per_group} expert(s) in each of {model_name}'s {shape.groups} expert groups (n_group); its router scores "
                f"a group by its {GROUP_SCORE_EXPERTS} best experts: accepted: a ratio that keeps at least {GROUP_SCORE_EXPERTS * shape.groups} experts"
            )
        if shape.top_k > shape.top_groups * per_group:
            raise ValueError(
                f"experts.ratio {ratio} leaves {per_group} experts per group of {model_name}; a token chooses {shape.top_k} experts (top-k) from "
                f"{shape.top_groups} group(s) (topk_group), which would hold only {shape.top_groups * per_group}: accepted: a ratio that keeps more"
            )
    return kept
