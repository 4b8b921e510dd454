"""Mixture-of-experts blocks: which of their weights are scored, and how each one is laid out.

transformers stores a block's experts as ONE module holding fused 3D parameters, `gate_up_proj`
(experts, 2·I, H) and `down_proj` (experts, H, I) (or `up_proj` where there is no gate), applied
with one product per expert on only the tokens routed to it. `use_experts_implementation` marks
every such module with flags that describe its family's layout: `is_transposed` (gpt-oss stores
(experts, in, out)), `has_bias`, `has_gate`, `has_post_expert_norm`, and `_apply_gate`, which
knows whether gate and up are concatenated or interleaved. Those flags are data read here and by
the engine's one routed forward (engine/experts.py): no branch on a family's class name.

Scored units, one name each, as the per-expert linears of older checkpoints were named:
- each expert's slice of each fused tensor, an `ExpertSlice`: `model.layers.3.mlp.experts.5.gate_up_proj`;
- the router's (experts, H) `weight` (`model.layers.3.mlp.gate`): a module with `top_k`, `num_experts`
  and a raw 2D `weight` Parameter used with F.linear, its logits the first thing it returns;
- shared experts and their gates, which are ordinary nn.Linear modules.

A block whose weights are none of these (an unknown experts module, a router of another shape) is
refused by `check_scorable` before any work: nothing is scored silently without its experts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

FUSED = ("gate_up_proj", "up_proj", "down_proj")  # the fused expert tensors, in the order they are applied
_LAYOUT_FLAGS = ("has_gate", "has_bias", "is_transposed")


@dataclass(frozen=True)
class ExpertsLayout:
    """How one family stores its fused experts (the flags `use_experts_implementation` sets)."""

    has_gate: bool
    has_bias: bool
    transposed: bool  # (experts, in, out) instead of (experts, out, in)
    post_norm: bool

    @property
    def first(self) -> str:
        """The fused tensor applied first: gate and up together, or up alone."""
        return "gate_up_proj" if self.has_gate else "up_proj"

    def weight_and_bias(self, module: nn.Module, param: str, expert: int) -> tuple[Tensor, Tensor | None]:
        """Expert `expert`'s slice of the fused tensor `param` as (out, in), and its bias (None without)."""
        weight = getattr(module, param)[expert]
        return (weight.t() if self.transposed else weight), (getattr(module, f"{param}_bias")[expert] if self.has_bias else None)

    def activate(self, module: nn.Module, first: Tensor) -> Tensor:
        """The input of `down_proj` from the first product's output: the family's gate, or its activation."""
        return module._apply_gate(first) if self.has_gate else module.act_fn(first)

    def finish(self, module: nn.Module, y: Tensor) -> Tensor:
        """An expert's output from its `down_proj` product: the family's post-expert norm where it has one."""
        return module.post_expert_norm(y) if self.post_norm else y

    @staticmethod
    def of(module: nn.Module) -> ExpertsLayout | None:
        """The layout of a fused experts module, or None when `module` is not one."""
        if not all(hasattr(module, flag) for flag in _LAYOUT_FLAGS):
            return None
        layout = ExpertsLayout(bool(module.has_gate), bool(module.has_bias), bool(module.is_transposed), bool(getattr(module, "has_post_expert_norm", False)))
        return layout if all(_fused(module, name) is not None for name in (layout.first, "down_proj")) else None


def _fused(module: nn.Module, name: str) -> nn.Parameter | None:
    param = getattr(module, name, None)
    return param if isinstance(param, nn.Parameter) and param.dim() == 3 else None


class ExpertSlice:
    """One expert's slice of a fused experts tensor: a scored unit with what the engine reads from a
    linear: `weight` ((out, in), or (in, out) when `transposed`, as GPT-2's Conv1D), no bias.

    The tensor is looked up on every access, never kept: under FSDP2 the experts module holds its
    shard between passes and the gathered tensor during one.
    """

    def __init__(self, experts: nn.Module, param: str, expert: int, transposed: bool) -> None:
        self.experts, self.param, self.expert, self.transposed = experts, param, expert, transposed
        self.bias = None  # biases are never scored

    @property
    def weight(self) -> Tensor:
        return getattr(self.experts, self.param)[self.expert]

    @property
    def shape(self) -> torch.Size:
        """The slice's shape as stored, known without reading a (possibly sharded) tensor."""
        return getattr(self.experts, self.param).shape[1:]

    def __repr__(self) -> str:
        return f"ExpertSlice({type(self.experts).__name__}.{self.param}[{self.expert}], {tuple(self.shape)})"


def is_router(module: nn.Module) -> bool:
    """A router: not an nn.Linear, with `top_k`, `num_experts` and a raw (experts, hidden) weight."""
    weight = getattr(module, "weight", None)
    return (
        not isinstance(module, nn.Linear) and hasattr(module, "top_k") and isinstance(weight, nn.Parameter)
        and weight.dim() == 2 and weight.shape[0] == getattr(module, "num_experts", -1)
    )


def experts_modules(block: nn.Module) -> dict[str, tuple[nn.Module, ExpertsLayout]]:
    """The fused experts modules of one decoder block, by their name inside it, with their layout."""
    found = {}
    for name, module in block.named_modules():
        layout = ExpertsLayout.of(module)
        if layout is not None:
            found[name] = (module, layout)
    return found


def routers(block: nn.Module) -> dict[str, nn.Module]:
    """The routers of one decoder block, by their name inside it."""
    return {name: m for name, m in block.named_modules() if is_router(m)}


def expert_slices(block: nn.Module) -> dict[str, ExpertSlice]:
    """Every expert's slice of every fused tensor of one block: `mlp.experts.5.gate_up_proj` -> slice."""
    slices = {}
    for name, (module, layout) in experts_modules(block).items():
        for expert in range(getattr(module, layout.first).shape[0]):
            for param in (layout.first, "down_proj"):
                slices[f"{name}.{expert}.{param}"] = ExpertSlice(module, param, expert, layout.transposed)
    return slices


def fused_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every fused experts tensor of the model (kept as stored by the engine: each expert's slice is
    upcast on its own, never the whole tensor)."""
    return [getattr(m, name) for m in model.modules() if (layout := ExpertsLayout.of(m)) for name in (layout.first, "down_proj")]


def expert_biases(model: nn.Module) -> list[nn.Parameter]:
    """The fused experts' bias tensors (experts, out): never scored, as no bias is."""
    return [
        getattr(m, f"{name}_bias") for m in model.modules() if (layout := ExpertsLayout.of(m)) and layout.has_bias
        for name in (layout.first, "down_proj") if isinstance(getattr(m, f"{name}_bias", None), nn.Parameter)
    ]


def is_moe(model: nn.Module) -> bool:
    """Whether the model has fused experts anywhere."""
    return any(ExpertsLayout.of(m) is not None for m in model.modules())


_EXPERT = re.compile(r"(?:^|\.)experts\.(\d+)\.")


def expert_of(kind: str) -> tuple[int, str] | None:
    """(expert, module) of an expert slice's kind: 'mlp.experts.5.gate_up_proj' -> (5, 'mlp.experts.gate_up_proj');
    None for any other scored module."""
    match = _EXPERT.search(kind)
    if match is None:
        return None
    return int(match.group(1)), kind[: match.start(1)] + kind[match.end(1) + 1 :]


def unscored_weights(block: nn.Module, scored: Iterator[Tensor]) -> list[str]:
    """Matrix-shaped parameters of a block that no scored unit covers (names inside the block)."""
    covered = {id(t) for t in scored}
    return [name for name, p in block.named_parameters() if p.dim() >= 2 and id(p) not in covered]


def planned_forward(module: nn.Module, layout: ExpertsLayout, hidden_states: Tensor, top_k_index: Tensor, top_k_weights: Tensor) -> Tensor:
    """The experts' forward as a memory plan runs it on fake tensors, where routing has no values (and
    transformers' grouped kernel has no fake path for fp32): the top-k experts take every token, the k
    token-expert pairs per token that any routing gives, in the family's layout."""
    out = torch.zeros_like(hidden_states)
    for expert in range(min(module.num_experts, top_k_index.shape[1])):
        y = expert_output(module, layout, expert, hidden_states)
        out += y * top_k_weights[:, expert, None].to(y.dtype)
    return out


def expert_projection(module: nn.Module, layout: ExpertsLayout, param: str, expert: int, x: Tensor) -> Tensor:
    """x · W_eᵀ (+ b_e) for expert `expert`'s slice of the fused tensor `param`, a plain matmul."""
    weight, bias = layout.weight_and_bias(module, param, expert)
    y = x @ weight.t()
    return y if bias is None else y + bias


def expert_output(module: nn.Module, layout: ExpertsLayout, expert: int, x: Tensor) -> Tensor:
    """f_e(x): expert `expert` applied to tokens x (n, hidden), without its gate weight (plain matmuls)."""
    h = layout.activate(module, expert_projection(module, layout, layout.first, expert, x))
    return layout.finish(module, expert_projection(module, layout, "down_proj", expert, h))


@contextmanager
def restored_forwards(modules: list[nn.Module]) -> Iterator[None]:
    """Inside, the modules' `forward` may be replaced; on exit each gets back what it had: its class's,
    or the instance's own (a plan's fake model has `planned_forward`)."""
    saved = [(m, m.__dict__.get("forward")) for m in modules]
    try:
        yield
    finally:
        for module, forward in saved:
            if forward is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = forward


def plan_experts(model: nn.Module) -> None:
    """Give every fused experts module of a fake-tensor model the static `planned_forward` (the model is
    the plan's own, never run for real)."""
    from functools import partial

    for module in model.modules():
        layout = ExpertsLayout.of(module)
        if layout is not None:
            module.forward = partial(planned_forward, module, layout)
