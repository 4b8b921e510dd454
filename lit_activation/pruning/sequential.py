"""Wanda pruning (docs/method.md §5): score each weight, prune the lowest per output row, block by block.

`prune_mask` turns one weight matrix's scores into a mask; `wanda_mask` is it with Wanda's scores
|W_jk|·‖X_k‖₂. `prune_sequential` runs sequentially with any metric (pruning/metrics): the inputs of
block 0 are captured on the calibration set (with the exact arguments the model passes to its
decoder layers, rotary position embeddings included), then for each block the input norms of its
linear modules are collected with hooks, the block is pruned by the metric's scores, and the
PRUNED block is re-run to make the next block's inputs. No weight is updated. Memory: one block's
calibration activations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig
from transformers.pytorch_utils import Conv1D

from lit_activation.distributed.sharding import is_sharded, local, row_offset
from lit_activation.models.architectures import fake_model
from lit_activation.models.layers import block_linears, decoder_layers, weight_out_in
from lit_activation.planning import simulate
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.sparsity import check_nm

if TYPE_CHECKING:
    from lit_activation.pruning.metrics import PruningMetric

def prune_mask(score: Tensor, sparsity: float, n: int = 0, m: int = 0) -> Tensor:
    """Boolean mask (True = set to zero) from the scores of a weight of shape (out, in).

    Unstructured: in every output row the ⌊in · sparsity⌋ lowest scores are pruned. N:M (n, m > 0):
    in every group of m consecutive inputs of a row, the n lowest. Ties: the sort is stable, so
    among equal scores the LOWER input index is pruned first — deterministic, which matters for
    dequantized (GGUF) weights where equal magnitudes are common.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"Sparsity {sparsity} is outside [0, 1)")
    check_nm(sparsity, n, m)
    out_features, in_features = score.shape
    mask = torch.zeros_like(score, dtype=torch.bool)
    if m:
        if in_features % m:
            raise ValueError(f"N:M with m={m} needs in_features divisible by m, got {in_features}")
        grouped = score.reshape(out_features, in_features // m, m)
        order = grouped.argsort(dim=-1, stable=True)[..., :n]
        mask.view(out_features, in_features // m, m).scatter_(-1, order, True)
        return mask
    k = int(in_features * sparsity)
    if k:
        mask.scatter_(1, score.argsort(dim=1, stable=True)[:, :k], True)
    return mask


def wanda_mask(weight: Tensor, input_norm: Tensor, sparsity: float, n: int = 0, m: int = 0) -> Tensor:
    """`prune_mask` of Wanda's scores S_jk = |W_jk| · ‖X_k‖₂ (input_norm = ones: magnitude pruning)."""
    if input_norm.shape != (weight.shape[1],):
        raise ValueError(f"input_norm has shape {tuple(input_norm.shape)}; expected ({weight.shape[1]},)")
    return prune_mask(weight.detach().abs().float() * input_norm.float()[None, :], sparsity, n, m)


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


def input_norms(block: nn.Module, inputs: BlockInputs) -> dict[str, Tensor]:
    """‖X_k‖₂ over every calibration token, per input channel of each linear module (fp64 sums)."""
    modules = block_linears(block)
    sums = {name: torch.zeros(weight_out_in(m).shape[1], dtype=torch.float64, device=m.weight.device) for name, m in modules.items()}

    def hook(name: str) -> Callable:
        def fn(module: nn.Module, args: tuple, output: Tensor) -> None:
            x = args[0].detach()
            sums[name] += x.reshape(-1, x.shape[-1]).double().pow(2).sum(0)

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        _run_block(block, inputs)
    finally:
        for h in handles:
            h.remove()
    return {name: s.sqrt() for name, s in sums.items()}


@torch.no_grad()
def sequential_blocks(
    model: nn.Module,
    calibration_ids: Tensor,
    visit: Callable[[int, nn.Module, dict[str, Tensor]], None],
    batch_size: int = 1,
) -> None:
    """For each block in order: collect input norms, call visit(index, block, norms), re-run the block
    (as `visit` left it) to produce the next block's inputs."""
    _, layers = decoder_layers(model)
    inputs = capture_first_block_inputs(model, calibration_ids, batch_size)
    for index, block in enumerate(layers):
        visit(index, block, input_norms(block, inputs))
        inputs.hidden = _run_block(block, inputs)


def prune_module(module: nn.Module, score_of: Callable[[Tensor], Tensor], sparsity: float, n: int = 0, m: int = 0) -> float:
    """Zero the lowest-scored weights of every output row of one linear, in place; returns the pruned fraction.

    score_of: the scores of a weight (out, in) given as such (a metric's, pruning/metrics). A
    sharded weight (FSDP2) holds whole rows of a Linear on each rank: its mask is formed there. A
    Conv1D stores (in, out), so its rows are spread over the ranks: it is gathered, per module.
    """
    weight = module.weight.detach()
    part = local(weight)
    if not is_sharded(weight) or isinstance(module, Conv1D):
        full = weight.full_tensor() if is_sharded(weight) else weight
        mask = prune_mask(score_of(weight_out_in(module, full)), sparsity, n, m)
        mask = mask.t() if isinstance(module, Conv1D) else mask  # back to the stored layout
        start = row_offset(weight)
        part.masked_fill_(mask[start : start + part.shape[0]], 0)
        return float(mask.float().mean())
    mask = prune_mask(score_of(part), sparsity, n, m)
    part.masked_fill_(mask, 0)
    return float(mask.float().mean())  # every row prunes as many: this rank's fraction is the module's


def prune_sequential(
    model: nn.Module,
    calibration_ids: Tensor,
    layer_sparsity: Sequence[float],
    n: int = 0,
    m: int = 0,
    metric: PruningMetric | None = None,
    batch_size: int = 1,
    context: PruningContext | None = None,
) -> dict[str, float]:
    """Prune the model in place; returns the pruned fraction of every linear module (by full name).

    calibration_ids: (n_samples, seqlen) LongTensor. layer_sparsity: one float per decoder layer.
    metric: the scores (default Wanda's |W|·‖X‖; `Magnitude` ignores the inputs). context: what the
    metric may read (default: built from the arguments). A sharded model (FSDP2) is pruned shard
    by shard: every rank runs the same calibration batch.
    """
    prefix, layers = decoder_layers(model)
    if len(layer_sparsity) != len(layers):
        raise ValueError(f"layer_sparsity has {len(layer_sparsity)} values; the model has {len(layers)} decoder layers")
    if calibration_ids.ndim != 2:
        raise ValueError(f"calibration_ids must be (n_samples, seqlen), got shape {tuple(calibration_ids.shape)}")
    if metric is None:
        from lit_activation.pruning.metrics.wanda import Wanda  # the metrics build on this module: imported on use

        metric = Wanda()
    context = context or PruningContext(model, None, calibration_ids, "", None, batch_size)
    metric.prepare(context)
    pruned: dict[str, float] = {}

    def visit(index: int, block: nn.Module, norms: dict[str, Tensor]) -> None:
        metric.enter_block(index, context)
        for name, module in block_linears(block).items():
            full = f"{prefix}.{index}.{name}"
            score_of = lambda weight, full=full, module=module, norm=norms[name]: metric.scores(full, module, weight, norm)  # noqa: E731
            pruned[full] = prune_module(module, score_of, layer_sparsity[index], n, m)

    sequential_blocks(model, calibration_ids, visit, batch_size)
    return pruned


@simulate.cached
def calibration_inputs(config: PretrainedConfig, dtype: torch.dtype, samples: int, seqlen: int, batch_size: int) -> int:
    """Bytes held between blocks by sequential pruning, run on fake tensors: the calibration batch's
    inputs to the current block and the block's other arguments (rotary tables, masks) per chunk."""
    mode = simulate.FakeTensorMode()
    model = fake_model(simulate.one_block_config(config), dtype, mode)
    with mode:
        calibration = torch.zeros((samples, seqlen), dtype=torch.long)
    held: list[BlockInputs] = []
    tracker = simulate.LiveBytes([*model.parameters(), *model.buffers(), calibration])
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
