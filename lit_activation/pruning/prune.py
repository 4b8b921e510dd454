"""Pruning a model: its options checked, the allocation's layer sparsities, each block's linears pruned by a method
(a metric's scores, or its own prune) block by block on the calibration batch, and what was achieved.
`prune_model` does it all to a model you hold; the `Pruning` callback does it inside a Lightning run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import Tensor, nn

from lit_activation.data.samples import calibration_ids
from lit_activation.distributed.sharding import local
from lit_activation.distributed.shards import LOCAL, Shards
from lit_activation.models.experts import is_moe
from lit_activation.models.layers import block_prunable, decoder_layers, layer_index, weight_shape
from lit_activation.planning.memory import release_memory
from lit_activation.pruning.allocations import Allocation, Uniform
from lit_activation.pruning.context import Calibration, PruningContext
from lit_activation.pruning.expert_inputs import ExpertInputs, expert_key
from lit_activation.pruning.experts.layout import MoEShape
from lit_activation.pruning.experts.options import ExpertPruning, remove_scored_experts
from lit_activation.pruning.masks import prune_module
from lit_activation.pruning.metrics import PruningMetric, Wanda
from lit_activation.pruning.sequential import BlockInputs, sequential_blocks
from lit_activation.pruning.sparsity import check_nm, over_all_weights, parse_nm, weighted_mean

# prune_module lives in masks.py; imported from here before
__all__ = ["achieved_sparsity", "allocate_and_prune", "check_pruning", "prune_model", "prune_module", "prune_sequential"]


def prune_sequential(
    model: nn.Module,
    calibration_ids: Tensor,
    layer_sparsity: Sequence[float],
    n: int = 0,
    m: int = 0,
    metric: PruningMetric | None = None,
    batch_size: int = 1,
    context: PruningContext | None = None,
    expert_sparsity: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Prune the model in place; returns the pruned fraction of every linear module (by full name).

    calibration_ids: (n_samples, seqlen) LongTensor. layer_sparsity: one float per decoder layer.
    metric: the method (default Wanda's |W|·‖X‖; `Magnitude` ignores the inputs; `SparseGPT` reads
    H = 2XXᵀ and updates the weights it keeps). context: what the metric may read (default: built
    from the arguments). A sharded model (FSDP2) is pruned shard by shard: every rank runs the same
    calibration batch. expert_sparsity: a per-expert allocation's sparsity of each expert of a mixture
    of experts (`<experts module>.<e>` -> s), in place of its layer's.
    """
    prefix, layers = decoder_layers(model)
    if len(layer_sparsity) != len(layers):
        raise ValueError(f"layer_sparsity has {len(layer_sparsity)} values; the model has {len(layers)} decoder layers")
    if calibration_ids.ndim != 2:
        raise ValueError(f"calibration_ids must be (n_samples, seqlen), got shape {tuple(calibration_ids.shape)}")
    metric = metric or Wanda()
    context = context or PruningContext(model, None, calibration_ids, "", None, batch_size)
    check_experts_prunable(is_moe(model), str(getattr(model.config, "name_or_path", "") or type(model).__name__), [metric])
    metric.prepare(context)
    pruned: dict[str, float] = {}
    tokens: dict[str, int] = {}  # a mixture of experts: the current block's calibration tokens per expert

    def collect(block: nn.Module, inputs: BlockInputs) -> dict[str, Tensor]:
        tokens.clear()
        return metric.input_statistics(block, inputs, context.expert_inputs, tokens)

    def visit(index: int, block: nn.Module, statistics: dict[str, Tensor]) -> None:
        context.expert_tokens.update({f"{prefix}.{index}.{key}": count for key, count in tokens.items()})
        metric.enter_block(index, context)
        for name, module in block_prunable(block, context.expert_inputs.routers).items():
            full = f"{prefix}.{index}.{name}"
            # popped, not read: a module's statistic (SparseGPT's H, in² fp32) is freed once it is pruned
            sparsity = (expert_sparsity or {}).get(expert_key(full), layer_sparsity[index])  # a per-expert allocation's, or the layer's
            pruned[full] = metric.prune(full, module, statistics.pop(name), sparsity, n, m, context)

    sequential_blocks(model, calibration_ids, visit, batch_size, collect)
    return pruned


def expert_record(context: PruningContext) -> dict[str, Any]:
    """What pruning.json records of a mixture of experts: the policy and rule its experts were pruned by,
    and each expert's calibration tokens (`<experts module>.<e>` -> count); nothing for a dense model."""
    if not context.expert_tokens:
        return {}
    few = sorted(key for key, count in context.expert_tokens.items() if count < context.expert_inputs.min_tokens)
    record = {"expert_inputs": asdict(context.expert_inputs), "expert_tokens": dict(context.expert_tokens), "few_token_experts": few}
    return record | ({"expert_sparsity": dict(context.expert_sparsity)} if context.expert_sparsity else {})


def check_experts_prunable(moe: bool, name: str, metrics: Sequence[PruningMetric]) -> None:
    """Refuse, before any work, a method that cannot prune inside a mixture of experts' experts."""
    unable = [type(m).__name__ for m in metrics if not m.prunes_experts]
    if moe and unable:
        raise ValueError(
            f"{name} is a mixture of experts: {', '.join(unable)} cannot prune inside its experts yet; accepted there: Wanda, Magnitude, SparseGPT"
        )


def check_pruning(sparsity: float, allocation: Allocation, metric: PruningMetric, nm: str | None) -> tuple[int, int]:
    """The options of one pruning, checked before any work; returns N:M's (n, m), (0, 0) unstructured."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"Sparsity {sparsity} is outside [0, 1): 0 keeps every weight, 0.5 prunes half")
    n, m = parse_nm(nm)
    check_nm(sparsity, n, m)
    if not isinstance(metric, PruningMetric):
        raise ValueError(f"metric {metric!r} is not a pruning metric; accepted: Wanda, Magnitude, Taylor, GBLM, SparseGPT (lit_activation.pruning.metrics)")
    if not isinstance(allocation, Allocation):
        raise ValueError(f"allocation {allocation!r} is not an allocation; accepted: Uniform, Activation, OWL, AlphaPruning (pruning.allocations)")
    if m and not isinstance(allocation, Uniform):
        raise ValueError(f"N:M pruning fixes every layer at n/m; allocation must be Uniform, got {type(allocation).__name__}")
    return n, m


def achieved_sparsity(model: nn.Module, pruned: Mapping[str, float], shards: Shards = LOCAL, routers: bool = False) -> dict[str, Any]:
    """Pruned fraction (by mask) and zero fraction (zeros already there included), overall, per layer and
    per module, over every unit pruning visits (a mixture of experts' expert slices included, its
    routers when they were pruned); `pruned`: each pruned unit's fraction (prune_sequential's result)."""
    prefix, layers = decoder_layers(model)
    n_layers = len(layers)
    zeros, sizes, masked = [0] * n_layers, [0] * n_layers, [0.0] * n_layers
    modules = {}
    units = {f"{prefix}.{i}.{sub}": unit for i, block in enumerate(layers) for sub, unit in block_prunable(block, routers).items()}
    for name, module in units.items():
        layer = layer_index(name, prefix)
        numel = weight_shape(module).numel()
        zero = int(shards.sum(torch.tensor([int((local(module.weight) == 0).sum())]))[0])
        zeros[layer] += zero
        sizes[layer] += numel
        masked[layer] += pruned.get(name, 0.0) * numel
        modules[name] = {"pruned": pruned.get(name, 0.0), "zeros": zero / numel, "size": numel}
    layer_pruned = [p / s for p, s in zip(masked, sizes, strict=True)]
    return {
        "achieved_sparsity": weighted_mean(layer_pruned, sizes),
        "achieved_zero_fraction": sum(zeros) / sum(sizes),
        "layer_pruned": layer_pruned,
        "layer_zero_fraction": [z / s for z, s in zip(zeros, sizes, strict=True)],
        "modules": modules,
    }


def allocate_and_prune(
    context: PruningContext, sparsity: float, allocation: Allocation, metric: PruningMetric, n: int = 0, m: int = 0
) -> tuple[list[float], dict[str, float]]:
    """The allocation's layer sparsities for `sparsity`, then every block pruned by `metric` in place:
    (the layer sparsities, each pruned module's fraction)."""
    sparsities = allocation.layer_sparsity(sparsity, context)
    _, layers = decoder_layers(context.model)
    sizes = [sum(weight_shape(u).numel() for u in block_prunable(block, context.expert_inputs.routers).values()) for block in layers]
    sparsities = over_all_weights(sparsities, sizes, sparsity, allocation.label)
    per_expert = allocation.expert_sparsity(sparsities, context)
    context.expert_sparsity = per_expert
    release_memory()  # the allocation's scoring or OWL pass is done: its memory goes back
    pruned = prune_sequential(context.model, context.calibration_ids, sparsities, n, m, metric, context.batch_size, context, per_expert)
    return sparsities, pruned


def prune_model(
    model: nn.Module,
    tokenizer: Any,
    sparsity: float,
    allocation: Allocation | None = None,
    metric: PruningMetric | None = None,
    calibration: Calibration | None = None,
    nm: str | None = None,
    expert_inputs: ExpertInputs | None = None,
    experts: ExpertPruning | None = None,
) -> dict[str, Any]:
    """Prune a causal LM you hold, in place, as `lit-activation validate` does (docs/method.md §5).

    Args:
        model, tokenizer: a Hugging Face causal LM and its tokenizer, already loaded (on any device).
        sparsity: the overall target in [0, 1).
        allocation: how it is spread over the layers (default `Uniform()`; `Activation()`, `OWL()`,
            `AlphaPruning()`).
        metric: which weights of a layer go (default `Wanda()`; `Magnitude()`, `Taylor()`, `GBLM()`,
            `SparseGPT()`).
        calibration: the calibration batch (default `Calibration()`: 128 × 2048 tokens of c4).
        nm: N:M semi-structured pruning, e.g. '2:4' (then sparsity n/m and the allocation Uniform).
        expert_inputs: a mixture of experts: which tokens each expert is pruned from (ExpertInputs).
        experts: whole experts of a mixture of experts removed first, e.g. `ExpertPruning(0.25, REAP())`
            (lit_activation.pruning.experts; docs/moe.md, "Removing experts"); then the weights at `sparsity`.

    Returns what `pruning.json` holds: the layer sparsities asked for, and the achieved sparsity and
    zero fraction overall, per layer and per module (and `experts`: those removed and kept, with their scores).
    """
    allocation = allocation if allocation is not None else Uniform()
    metric = metric if metric is not None else Wanda()
    calibration = calibration if calibration is not None else Calibration()
    expert_inputs = expert_inputs if expert_inputs is not None else ExpertInputs()
    experts = experts if experts is not None else ExpertPruning()
    n, m = check_pruning(sparsity, allocation, metric, nm)
    _, layers = decoder_layers(model)
    name = str(getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__)
    if sparsity > 0:
        check_experts_prunable(is_moe(model), name, [metric])
        allocation.check_experts(name, is_moe(model))
    if experts.removes:
        experts.check(name, len(layers), MoEShape.of(model))
    if sparsity > 0:
        allocation.check(name, len(layers))
    method = allocation.label if sparsity > 0 else "experts" if experts.removes else "dense"
    record: dict[str, Any] = {
        "model": name, "method": method, "allocation": allocation.describe(), "metric": metric.label,
        "metric_options": metric.describe(), "target_sparsity": sparsity, "nm": nm, "calibration": asdict(calibration),
    }
    pruned: dict[str, float] = {}
    c = calibration
    ids = None
    if sparsity > 0 or experts.calibrated:
        ids = calibration_ids(c.dataset, tokenizer, c.samples, c.seqlen, c.seed, c.files).to(next(model.parameters()).device)
    if experts.removes:  # first: the weights pruned below are the kept experts' (two-stage)
        record["experts"] = remove_scored_experts(model, experts, ids, c.batch_size, name)
    if sparsity > 0:
        assert ids is not None
        context = PruningContext(model, tokenizer, ids, c.dataset, c.files, c.batch_size, expert_inputs=expert_inputs)
        sparsities, pruned = allocate_and_prune(context, sparsity, allocation, metric, n, m)
        record.update(layer_sparsity=sparsities, allocation=allocation.describe(), **expert_record(context))
    return record | achieved_sparsity(model, pruned, routers=expert_inputs.routers)
