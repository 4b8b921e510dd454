"""Sequential pruning: each block's linears pruned by a method (a metric's scores, or its own prune), block by block, on the calibration batch."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lit_activation.models.layers import block_linears, decoder_layers
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.masks import prune_module
from lit_activation.pruning.metrics import PruningMetric, Wanda
from lit_activation.pruning.sequential import sequential_blocks

__all__ = ["prune_module", "prune_sequential"]  # prune_module lives in masks.py; imported from here before


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
    metric: the method (default Wanda's |W|·‖X‖; `Magnitude` ignores the inputs; `SparseGPT` reads
    H = 2XXᵀ and updates the weights it keeps). context: what the metric may read (default: built
    from the arguments). A sharded model (FSDP2) is pruned shard by shard: every rank runs the same
    calibration batch.
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

    def visit(index: int, block: nn.Module, statistics: dict[str, Tensor]) -> None:
        metric.enter_block(index, context)
        for name, module in block_linears(block).items():
            full = f"{prefix}.{index}.{name}"
            # popped, not read: a module's statistic (SparseGPT's H, in² fp32) is freed once it is pruned
            pruned[full] = metric.prune(full, module, statistics.pop(name), layer_sparsity[index], n, m, context)

    sequential_blocks(model, calibration_ids, visit, batch_size, metric.input_statistics)
    return pruned
