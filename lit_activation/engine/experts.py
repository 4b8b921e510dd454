"""Scores of a mixture of experts: one routed forward for every family, whatever its experts' kernel.

During a scoring pass every fused experts module (models/experts.py) computes with `routed_forward`
instead of its own `_experts_implementation` (eager, batched_mm, grouped_mm: the same function,
computed three ways). It applies each expert to only the tokens routed to it, as the eager path
does, through the pass's products (so bf16-stored experts are upcast one slice at a time and split
products reach the tensor cores), and hands each expert product's input and output to the score
hooks with the samples its tokens come from. The fused kernels have no per-expert call to hook
into; this path has one, and it is the same mathematics, so the scores do not depend on which
kernel the model was configured with.

Per sample s and expert e, G_s = Σ_t δ_t x_tᵀ runs over the tokens of s routed to e only: an expert
none of a sample's tokens reached gets exactly zero scores for it and costs nothing, and a sample's
cost grows with its routed tokens (top-k of E per token), not with E × tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from lit_activation.engine.products import IEEEProducts
from lit_activation.models.experts import ExpertsLayout, ExpertSlice, restored_forwards


@dataclass
class Routed:
    """Which samples one expert's routed tokens come from, and where each token goes in the padded
    per-sample layout (samples, longest, ·) that the per-sample products take."""

    samples: Tensor  # (S,) the batch rows with at least one token here, ascending
    group: Tensor  # (n,) each token's row among `samples`
    position: Tensor  # (n,) each token's place within its sample
    longest: int  # the most tokens one sample routed here

    @staticmethod
    def of(sample_of_token: Tensor) -> Routed:
        """The layout of tokens whose samples are `sample_of_token` (non-decreasing)."""
        samples, counts = torch.unique_consecutive(sample_of_token, return_counts=True)
        group = torch.repeat_interleave(torch.arange(samples.numel(), device=samples.device), counts)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.arange(sample_of_token.numel(), device=samples.device) - starts[group]
        return Routed(samples, group, position, int(counts.max()))

    def pad(self, rows: Tensor) -> Tensor:
        """(n, d) token rows -> (S, longest, d), zeros where a sample has fewer tokens."""
        out = rows.new_zeros((self.samples.numel(), self.longest, rows.shape[-1]))
        out[self.group, self.position] = rows
        return out


# capture(name, unit, x, output, routed, keep): what the score hooks take from one expert product: the
# scored tokens' inputs x, the product's output (every routed token's), their layout, which rows of the
# output are scored (its output gradient is taken there)
Capture = Callable[[str, ExpertSlice, Tensor, Tensor, Routed, Tensor], None]


@dataclass
class RoutingRecord:
    """One MoE block's routing of a batch's real tokens: for `lit_activation.callbacks`' routing statistics."""

    experts: str  # the experts module's name
    layer: int  # its decoder layer
    num_experts: int
    sample: Tensor  # (n,) the batch row of each real token
    expert_ids: Tensor  # (n, k) the experts it was routed to
    weights: Tensor  # (n, k) their gate weights


@dataclass
class ExpertsPass:
    """What the routed forward of one pass needs: the products, the hooks, and the batch's shape."""

    products: IEEEProducts
    tile_bytes: int
    capture: Capture
    real: Tensor  # (batch·T,) bool: real tokens (pads are routed too, but never scored or counted)
    batch: int
    routing: Callable[[RoutingRecord], None] | None = None


def _expert_product(module: nn.Module, param: str, expert: int, layout: ExpertsLayout, x: Tensor, run: ExpertsPass) -> Tensor:
    """x · W_eᵀ (+ b_e) for one expert's slice of one fused tensor, through the pass's products."""
    weight, bias = layout.weight_and_bias(module, param, expert)
    return run.products.linear(x, weight, bias, run.tile_bytes)


def routed_forward(
    module: nn.Module, layout: ExpertsLayout, name: str, layer: int, run: ExpertsPass, hidden_states: Tensor, top_k_index: Tensor,
    top_k_weights: Tensor,
) -> Tensor:
    """The experts' output for routed tokens, each expert applied to its own tokens (the eager path's
    mathematics, the flags' layout), with every product's input and output captured for scoring."""
    if isinstance(hidden_states, FakeTensor):
        return planned_forward(module, layout, name, run, hidden_states, top_k_index, top_k_weights)
    tokens_total, k = top_k_index.shape
    positions = tokens_total // run.batch
    flat = top_k_index.reshape(-1)
    order = torch.argsort(flat, stable=True)  # grouped by expert, tokens ascending within each
    counts = torch.bincount(flat, minlength=module.num_experts).tolist()  # one host sync per block, as the eager path
    if run.routing is not None:
        real = run.real[:tokens_total]
        run.routing(RoutingRecord(name, layer, module.num_experts, real.nonzero().flatten() // positions, top_k_index[real], top_k_weights[real]))
    out = torch.zeros_like(hidden_states)
    start = 0
    for expert, n in enumerate(counts[: module.num_experts]):  # ids past num_experts: an expert-parallel sentinel
        if n == 0:
            continue  # an expert no token reached: no product, no score
        pairs = order[start : start + n]
        start += n
        tokens, slots = pairs // k, pairs % k
        scored = run.real[tokens]
        routed = Routed.of(tokens[scored] // positions) if bool(scored.any()) else None
        x = hidden_states[tokens]
        first = _expert_product(module, layout.first, expert, layout, x, run)
        if routed is not None:
            run.capture(f"{name}.{expert}.{layout.first}", ExpertSlice(module, layout.first, expert, layout.transposed), x[scored], first, routed, scored)
        h = layout.activate(module, first)
        y = _expert_product(module, "down_proj", expert, layout, h, run)
        if routed is not None:
            run.capture(f"{name}.{expert}.down_proj", ExpertSlice(module, "down_proj", expert, layout.transposed), h[scored], y, routed, scored)
        y = layout.finish(module, y)
        out.index_add_(0, tokens, (y * top_k_weights[tokens, slots, None]).to(out.dtype))
    return out


def balanced_share(tokens: int, batch: int, top_k: int, experts: int) -> int:
    """Tokens per sample that each expert takes when a batch's routing is balanced: ⌈T·k/E⌉."""
    positions = tokens // batch
    return -(-positions * top_k // experts)


def planned_forward(
    module: nn.Module, layout: ExpertsLayout, name: str, run: ExpertsPass, hidden_states: Tensor, top_k_index: Tensor, top_k_weights: Tensor,
) -> Tensor:
    """The routed forward as the memory plan simulates it on fake tensors, where routing has no values.

    The experts hold the batch's T·k token-expert pairs between them, as a real batch's do, whatever
    the routing: that is what the backward keeps. Simulated as the top-k experts taking every token
    (k × T pairs per sample, `balanced_share` with E = k): the same activations as any routing, one
    expert's transient inputs as large as a dense MLP's (an upper bound), and 1/E of the work for the
    planner, which visits 8 experts of Qwen3-MoE's 128 (docs/moe.md, "The memory plan")."""
    tokens_total, k = top_k_index.shape
    simulated = min(module.num_experts, k)
    share = balanced_share(tokens_total, run.batch, k, simulated)
    device = hidden_states.device
    group = torch.arange(run.batch, device=device).repeat_interleave(share)
    position = torch.arange(share, device=device).repeat(run.batch)
    routed = Routed(torch.arange(run.batch, device=device), group, position, share)
    tokens = (group * (tokens_total // run.batch) + position).clamp_max(tokens_total - 1)
    out = torch.zeros_like(hidden_states)
    for expert in range(simulated):
        x = hidden_states[tokens]
        first = _expert_product(module, layout.first, expert, layout, x, run)
        run.capture(f"{name}.{expert}.{layout.first}", ExpertSlice(module, layout.first, expert, layout.transposed), x, first, routed, None)
        h = layout.activate(module, first)
        y = _expert_product(module, "down_proj", expert, layout, h, run)
        run.capture(f"{name}.{expert}.down_proj", ExpertSlice(module, "down_proj", expert, layout.transposed), h, y, routed, None)
        y = layout.finish(module, y)
        out.index_add_(0, tokens, (y * top_k_weights.reshape(-1)[: tokens.numel(), None]).to(out.dtype))
    return out


@contextmanager
def routed_experts(experts: dict[str, tuple[nn.Module, ExpertsLayout, int]], run: ExpertsPass) -> Iterator[None]:
    """Inside, every experts module of `experts` (name -> (module, layout, layer)) computes with `routed_forward`."""
    with restored_forwards([module for module, _, _ in experts.values()]):
        for name, (module, layout, layer) in experts.items():
            module.forward = partial(routed_forward, module, layout, name, layer, run)
        yield
