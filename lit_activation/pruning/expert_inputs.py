"""What each expert of a mixture of experts is pruned from: its calibration inputs (docs/moe.md,
"Pruning inside experts").

Wanda's ‖X‖ and SparseGPT's H = 2XXᵀ of an expert's slice are sums over calibration tokens x. Which
tokens, is the policy:

- `routed` (default): the tokens the router sent to the expert, as it computes on them;
- `routed_weighted`: the same, each scaled by its gate weight (MoE-Pruner's |W|·‖X ⊙ g‖): a token
  the expert barely counts in the output counts less;
- `all_tokens`: every token through every expert (llm-compressor's `moe_calibrate_all_experts`),
  though only the routed ones reach the output.

An expert that received fewer than `min_tokens` routed tokens has little to go on: Wanda then takes
its inputs over every token (`all_tokens` for that expert alone, in a second pass over the block),
and SparseGPT raises its damping to `few_tokens_damping` (H = I, plain magnitude, with no token at
all), so that no Cholesky factorisation can fail. Routers stay dense unless `routers` is set: a
router is a few thousandths of an MoE layer's weights, and its errors move tokens between experts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from lit_activation.engine.products import IEEEProducts
from lit_activation.models.experts import ExpertsLayout, experts_modules, restored_forwards

POLICIES = ("routed", "routed_weighted", "all_tokens")


@dataclass(frozen=True)
class ExpertInputs:
    """How a mixture of experts is pruned inside its experts (ignored for a dense model).

    Attributes:
        policy: tokens each expert is pruned from. `routed`: those routed to it; `routed_weighted`:
            those, scaled by their gate weight (MoE-Pruner); `all_tokens`: every token through every
            expert (llm-compressor; E/k times the experts' calibration compute).
        min_tokens: the few-token rule's threshold. An expert routed fewer calibration tokens is pruned
            by Wanda from every token's inputs, by SparseGPT with `few_tokens_damping`.
        few_tokens_damping: SparseGPT's damping below min_tokens. Its percdamp for such an expert (the usual is 0.01).
        routers: prune the routers too. By default they stay dense.
    """

    policy: Literal["routed", "routed_weighted", "all_tokens"] = "routed"
    min_tokens: int = 16
    few_tokens_damping: float = 0.1
    routers: bool = False

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"expert_inputs.policy {self.policy!r} is not a policy; accepted: {list(POLICIES)}")
        if isinstance(self.min_tokens, bool) or not isinstance(self.min_tokens, int) or self.min_tokens < 0:
            raise ValueError(f"expert_inputs.min_tokens must be an integer >= 0, got {self.min_tokens!r}")
        if not self.few_tokens_damping >= 0:
            raise ValueError(f"expert_inputs.few_tokens_damping must be >= 0, got {self.few_tokens_damping!r}")


# add(name, X): fold the inputs X (tokens, in) of one expert's slice into its statistic
Add = Callable[[str, Tensor], None]


def _product(module: nn.Module, param: str, expert: int, layout: ExpertsLayout, x: Tensor) -> Tensor:
    weight, bias = layout.weight_and_bias(module, param, expert)
    return IEEEProducts().linear(x.to(weight.dtype), weight, bias, 64 << 20)


def calibration_forward(
    module: nn.Module, layout: ExpertsLayout, name: str, policy: str, only: set[int] | None, add: Add, tokens: dict[str, int],
    hidden_states: Tensor, top_k_index: Tensor, top_k_weights: Tensor,
) -> Tensor:
    """The experts' output (the eager path's mathematics), each expert slice's inputs under `policy`
    handed to `add`, and each expert's routed tokens counted in `tokens` (by `<name>.<expert>`).
    `only`: the experts whose statistics are taken (None: all); the output is whole either way."""
    k = top_k_index.shape[1]
    flat = top_k_index.reshape(-1)
    if isinstance(hidden_states, FakeTensor):  # the memory plan: routing has no values; the top-k experts take every token
        tokens_total = hidden_states.shape[0]
        counts = [tokens_total if e < k else 0 for e in range(module.num_experts)]
        order = torch.arange(tokens_total * k, device=flat.device).reshape(tokens_total, k).t().reshape(-1)
    else:
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=module.num_experts).tolist()
    out = torch.zeros_like(hidden_states)
    start = 0
    for expert in range(module.num_experts):
        n = counts[expert]
        pairs = order[start : start + n]
        start += n
        wanted = only is None or expert in only
        key = f"{name}.{expert}"
        if only is None:
            tokens[key] = tokens.get(key, 0) + n
        if n:
            routed, slots = pairs // k, pairs % k
            x = hidden_states[routed]
            first = _product(module, layout.first, expert, layout, x)
            h = layout.activate(module, first)
            y = layout.finish(module, _product(module, "down_proj", expert, layout, h))
            gate = top_k_weights[routed, slots, None]
            out.index_add_(0, routed, (y * gate).to(out.dtype))
            if wanted and policy != "all_tokens":
                scale = gate.to(x.dtype) if policy == "routed_weighted" else 1
                add(f"{key}.{layout.first}", x * scale)
                add(f"{key}.down_proj", h * scale)
        if wanted and policy == "all_tokens":  # every token through this expert, for its statistics alone
            h_all = _product(module, layout.first, expert, layout, hidden_states)
            add(f"{key}.{layout.first}", hidden_states)
            add(f"{key}.down_proj", layout.activate(module, h_all))
    return out


@contextmanager
def calibrating_experts(block: nn.Module, policy: str, add: Add, tokens: dict[str, int], only: set[str] | None = None) -> Iterator[None]:
    """Inside, every experts module of `block` computes with `calibration_forward` (names inside the
    block); `only`: the experts whose statistics are taken, as `<experts module>.<e>` (None: all)."""
    found = experts_modules(block)
    with restored_forwards([module for module, _ in found.values()]):
        for name, (module, layout) in found.items():
            chosen = None if only is None else {int(key.rsplit(".", 1)[1]) for key in only if key.rsplit(".", 1)[0] == name}
            module.forward = partial(calibration_forward, module, layout, name, policy, chosen, add, tokens)
        yield


def few_token_experts(tokens: dict[str, int], min_tokens: int) -> set[str]:
    """The experts (`<experts module>.<e>`) routed fewer than `min_tokens` tokens (`calibration_forward`'s counts)."""
    return {key for key, n in tokens.items() if n < min_tokens}


def expert_key(unit: str) -> str:
    """An expert slice's expert, `<experts module>.<e>`: 'mlp.experts.3.down_proj' -> 'mlp.experts.3'."""
    return unit.rsplit(".", 1)[0]
