"""Pruning block by block (docs/method.md §5), as Wanda does it: the calibration batch's exact inputs
to each decoder block, collected one block at a time.

The inputs of block 0 are captured with the exact arguments the model passes to its decoder layers
(rotary position embeddings included); for each block, hooks collect a statistic of its linear
modules' inputs (their norms, or SparseGPT's H = 2XXᵀ), a visitor prunes the block, and the PRUNED
block is re-run to make the next block's inputs.
Memory: one block's calibration activations (`calibration_peak`, `calibration_inputs`: the same
code on fake tensors, for the memory plan).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig

from lit_activation.models.architectures import fake_model
from lit_activation.models.layers import block_prunable, decoder_layers, weight_out_in
from lit_activation.planning import simulate
from lit_activation.pruning.expert_inputs import ExpertInputs, calibrating_experts, expert_key, few_token_experts


@dataclass
class BlockInputs:
    """Calibration inputs of the current block: hidden states per chunk and the block's other arguments."""

    hidden: list[Tensor] = field(default_factory=list)
    args: list[tuple] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)


def _hidden_of(args: tuple, kwargs: dict) -> Tensor:
    return args[0] if args else kwargs["hidden_states"]


def capture_first_block_inputs(model: nn.Module, calibration_ids: Tensor, batch_size: int = 1) -> BlockInputs:
    """Run the model on the calibration set up to block 0 and keep exactly what it receives.

    The forward is not cut short by an exception: under FSDP2 that would leave the root module's
    forward half done (its post-forward never runs). Every decoder block returns its input
    unchanged instead (a tensor, as transformers' blocks do) and the head sees one position, so
    the forward finishes at the cost of the embeddings; a sharded block still gathers its weights.
    """
    _, layers = decoder_layers(model)
    captured = BlockInputs()
    device = next(model.parameters()).device

    def first_block(*args: object, **kwargs: object) -> Tensor:
        hidden = _hidden_of(args, kwargs)
        captured.hidden.append(hidden)
        captured.args.append(args[1:])
        captured.kwargs.append({k: v for k, v in kwargs.items() if k != "hidden_states"})
        return hidden

    def later_block(*args: object, **kwargs: object) -> Tensor:
        return _hidden_of(args, kwargs)

    def one_position(module: nn.Module, args: tuple) -> tuple:
        return (args[0][:, :1],) + args[1:]

    for index, block in enumerate(layers):
        block.forward = first_block if index == 0 else later_block
    handle = model.get_output_embeddings().register_forward_pre_hook(one_position)
    try:
        for chunk in calibration_ids.split(batch_size):
            model(input_ids=chunk.to(device), use_cache=False)
    finally:
        handle.remove()
        for block in layers:
            del block.forward  # the class's forward again
    return captured


def _run_block(block: nn.Module, inputs: BlockInputs) -> list[Tensor]:
    outputs = []
    for hidden, args, kwargs in zip(inputs.hidden, inputs.args, inputs.kwargs, strict=True):
        out = block(hidden, *args, **kwargs)
        outputs.append(out[0] if isinstance(out, tuple) else out)
    return outputs


def _accumulate_inputs(
    block: nn.Module, inputs: BlockInputs, sums: dict[str, Tensor], add: Callable[[Tensor, Tensor], None], experts: ExpertInputs,
    tokens: dict[str, int], few_from_all: bool = False,
) -> None:
    """Run the block on its calibration inputs, calling add(sums[name], X) with each unit's inputs X
    (tokens, in): a linear's (or a router's) from a hook, an expert slice's from the calibration
    forward under `experts.policy`, its routed tokens counted into `tokens`. `few_from_all`: the
    experts routed fewer than `experts.min_tokens` tokens take theirs from every token instead (a
    second pass over the block, those experts alone)."""

    def add_expert(name: str, x: Tensor) -> None:
        add(sums[name], x.detach().reshape(-1, x.shape[-1]))

    handles = []
    for name, module in block_prunable(block, experts.routers).items():
        if not isinstance(module, nn.Module):
            continue  # an expert's slice: the calibration forward hands its inputs over

        def fn(module: nn.Module, args: tuple, output: Tensor, total: Tensor = sums[name]) -> None:
            x = args[0].detach()
            add(total, x.reshape(-1, x.shape[-1]))

        handles.append(module.register_forward_hook(fn))
    try:
        with calibrating_experts(block, experts.policy, add_expert, tokens):
            _run_block(block, inputs)
    finally:
        for h in handles:
            h.remove()
    few = few_token_experts(tokens, experts.min_tokens) if few_from_all and experts.policy != "all_tokens" else set()
    if few:
        for name in sums:
            if expert_key(name) in few:
                sums[name].zero_()
        with calibrating_experts(block, "all_tokens", add_expert, {}, only=few):
            _run_block(block, inputs)


def _widths(block: nn.Module, experts: ExpertInputs) -> dict[str, tuple[int, torch.device]]:
    return {name: (weight_out_in(m).shape[1], m.weight.device) for name, m in block_prunable(block, experts.routers).items()}


def input_norms(block: nn.Module, inputs: BlockInputs, experts: ExpertInputs | None = None, tokens: dict[str, int] | None = None) -> dict[str, Tensor]:
    """‖X_k‖₂ over the calibration tokens, per input channel of each unit (fp64 sums): every token for a
    linear, an expert's by `experts` (its routed tokens by default; every token when it got fewer than
    `min_tokens`). `tokens`: each expert's routed tokens are counted there."""
    experts = experts or ExpertInputs()
    sums = {name: torch.zeros(width, dtype=torch.float64, device=device) for name, (width, device) in _widths(block, experts).items()}
    _accumulate_inputs(block, inputs, sums, lambda total, x: total.add_(x.double().pow(2).sum(0)), experts, {} if tokens is None else tokens, True)
    return {name: s.sqrt() for name, s in sums.items()}


def input_hessians(block: nn.Module, inputs: BlockInputs, experts: ExpertInputs | None = None, tokens: dict[str, int] | None = None) -> dict[str, Tensor]:
    """H = 2·Σ x xᵀ over the calibration tokens, per unit (in, in), fp32: SparseGPT's Hessian of the
    layer-wise squared error. One H per module, as the reference keeps them (q, k and v each their
    own), all of a block's at once while its inputs run; an expert's from its tokens by `experts`
    (few of them: SparseGPT raises its damping instead, `SparseGPT.prune`)."""
    experts = experts or ExpertInputs()
    sums = {name: torch.zeros((width, width), dtype=torch.float32, device=device) for name, (width, device) in _widths(block, experts).items()}
    _accumulate_inputs(block, inputs, sums, _add_gram, experts, {} if tokens is None else tokens)
    return sums


def _add_gram(total: Tensor, x: Tensor) -> None:
    x = x.float()  # a copy only for a model not in fp32
    total.addmm_(x.t(), x, alpha=2)


@torch.no_grad()
def sequential_blocks(
    model: nn.Module,
    calibration_ids: Tensor,
    visit: Callable[[int, nn.Module, dict[str, Tensor]], None],
    batch_size: int = 1,
    collect: Callable[[nn.Module, BlockInputs], dict[str, Tensor]] = input_norms,
) -> None:
    """For each block in order: collect a statistic of its linears' inputs (default: their norms),
    call visit(index, block, statistics), re-run the block (as `visit` left it) to produce the next
    block's inputs."""
    _, layers = decoder_layers(model)
    inputs = capture_first_block_inputs(model, calibration_ids, batch_size)
    for index, block in enumerate(layers):
        visit(index, block, collect(block, inputs))
        inputs.hidden = _run_block(block, inputs)


@simulate.cached
def calibration_inputs(config: PretrainedConfig, dtype: torch.dtype, samples: int, seqlen: int, batch_size: int) -> int:
    """Bytes held between blocks by sequential pruning, run on fake tensors: the calibration batch's
    inputs to the current block and the block's other arguments (rotary tables, masks) per chunk."""
    mode = simulate.FakeTensorMode()
    model = fake_model(simulate.one_block_config(config), dtype, mode)
    with mode:
        calibration = torch.zeros((samples, seqlen), dtype=torch.long)
    held: list[BlockInputs] = []
    tracker = simulate.LiveBytes([*model.parameters(), *model.buffers(), calibration], fake=True)
    with mode, tracker:
        held.append(capture_first_block_inputs(model, calibration, batch_size))
    return tracker.live


@simulate.cached
def calibration_peak(config: PretrainedConfig, dtype: torch.dtype, samples: int, seqlen: int, batch_size: int) -> int:
    """Peak bytes (beyond the weights) of sequential pruning on one block, run on fake tensors: the
    calibration batch's block inputs and outputs, the block's call arguments, one chunk's forward."""
    mode = simulate.FakeTensorMode()
    model = fake_model(simulate.one_block_config(config), dtype, mode)
    with mode:
        calibration = torch.zeros((samples, seqlen), dtype=torch.long)
    run = lambda: sequential_blocks(model, calibration, lambda index, block, norms: None, batch_size)  # noqa: E731
    return simulate.peak_bytes(run, mode, [*model.parameters(), *model.buffers(), calibration])
