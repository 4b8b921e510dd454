"""Sequential pruning: each block's linears pruned by a metric's scores, block by block, on the calibration batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from lit_activation.distributed.sharding import is_sharded, local, row_offset
from lit_activation.models.layers import block_linears, decoder_layers, weight_out_in
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.masks import prune_mask
from lit_activation.pruning.metrics import PruningMetric, Wanda
from lit_activation.pruning.sequential import sequential_blocks


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
    metric = metric or Wanda()
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
