"""Models larger than one device: FSDP2 under Lightning's ModelParallelStrategy, exact against one process.

The shard group is Lightning's `tensor_parallel` dimension (the reverse of Lightning's own FSDP
examples, which shard over `data_parallel`): its ranks score the same batches, each forming the
per-sample gradients of its own weight rows, so nothing parameter-sized crosses ranks per batch
and counts combine as integer sums. Layout and the choice of rows: docs/design.md, "Sharding".
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lit_activation.distributed.shards import LOCAL, Shards
from lit_activation.models.experts import fused_parameters
from lit_activation.models.layers import decoder_layers, weight_shape

SHARD_DIM = "tensor_parallel"  # the mesh dimension whose ranks share batches and split rows
REPLICA_DIM = "data_parallel"


def shard_group_size(mesh) -> int:  # noqa: ANN001 - a DeviceMesh
    """How many ranks split each weight: the mesh's tensor_parallel size."""
    return mesh[SHARD_DIM].size()


def replicated_layout_warning(devices: int, shard_group: int) -> str | None:
    """The line a layout that shards nothing deserves (None when it shards, or runs on one device)."""
    if devices <= 1 or shard_group > 1:
        return None
    return (
        f"ModelParallelStrategy with tensor_parallel_size 1 shards nothing: each of the {devices} devices holds a full copy "
        f"of the model (data-parallel replicas). This project shards over Lightning's tensor_parallel dimension (the reverse "
        f"of Lightning's FSDP examples): to split the weights over {devices} devices set tensor_parallel_size: {devices}, "
        f"data_parallel_size: 1 (or leave both 'auto')"
    )


def warn_if_replicated(mesh) -> None:  # noqa: ANN001 - a DeviceMesh
    """Warn once (rank 0) when the strategy's layout shards nothing; the run goes on as replicas."""
    from lightning.pytorch.utilities import rank_zero_warn

    message = replicated_layout_warning(mesh.size(), shard_group_size(mesh))
    if message:
        rank_zero_warn(message)


def is_sharded(tensor: Tensor) -> bool:
    """Whether a parameter is an FSDP2 shard (a DTensor)."""
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def local(tensor: Tensor) -> Tensor:
    """This rank's part of a parameter (its rows), or the tensor itself when it is not sharded."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def row_offset(weight: Tensor) -> int:
    """The first row of this rank's shard of `weight` (0 when it is not sharded)."""
    if not is_sharded(weight):
        return 0
    from torch.distributed.tensor import Shard

    dims = [i for i, p in enumerate(weight.placements) if isinstance(p, Shard) and p.dim == 0]
    if not dims:
        return 0
    size, rank = weight.device_mesh.size(dims[0]), weight.device_mesh.get_local_rank(dims[0])
    return min(weight.shape[0], rank * -(-weight.shape[0] // size))


def shard_model(model: nn.Module, mesh, compute_dtype: torch.dtype) -> None:  # noqa: ANN001 - a DeviceMesh
    """fully_shard every decoder block, then the rest (embeddings, final norm, head) as the root.

    Gathered weights are cast to `compute_dtype` (FSDP2's mixed precision): with bf16 storage and
    fp32 compute one block exists in fp32 at a time, never the whole model.

    A fused experts tensor (experts, rows, cols) is split along its rows (dim 1), not its experts:
    each rank holds and scores its rows of EVERY expert, so that a rank's share is 1/N whatever the
    number of experts against the ranks, and its work follows the batch's tokens, not the experts
    the router favours (docs/moe.md, "Sharded").
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.distributed.tensor import Shard

    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    fused = {id(p) for p in fused_parameters(model)}
    by_rows = lambda param: Shard(1) if id(param) in fused else None  # noqa: E731 - None: FSDP2's dim 0
    for block in decoder_layers(model)[1]:
        fully_shard(block, mesh=mesh, mp_policy=policy, shard_placement_fn=by_rows)
    # The root (embeddings, final norm, head) stays gathered from its forward to its backward, as FSDP2
    # keeps a root by default, said here because the loss target relies on it: its head runs after
    # the forward, on the final hidden states, and again in the backward (engine/targets.py).
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=False)


def own_rows(modules: Mapping[str, nn.Module], mesh) -> dict[str, tuple[int, int]]:  # noqa: ANN001
    """Per module, the rows [start, stop) of this rank's shard: where FSDP2 put them (torch.chunk of dim 0)."""
    size, rank = mesh[SHARD_DIM].size(), mesh[SHARD_DIM].get_local_rank()
    rows = {}
    for name, module in modules.items():
        n = weight_shape(module)[0]
        step = -(-n // size)  # torch.chunk: ceil(n / size) rows per rank, the last ones fewer or none
        start, stop = min(n, rank * step), min(n, (rank + 1) * step)
        if is_sharded(module.weight) and local(module.weight).shape[0] != stop - start:
            raise RuntimeError(f"{name}: FSDP holds {local(module.weight).shape[0]} rows here, expected {stop - start}; its layout changed")
        rows[name] = (start, stop)
    return rows


def _mesh_of(trainer) -> object | None:  # noqa: ANN001 - a Lightning Trainer
    """The strategy's device mesh when it shards (ModelParallelStrategy), else None."""
    return getattr(trainer.strategy, "device_mesh", None) if type(trainer.strategy).__name__ == "ModelParallelStrategy" else None


def _all_reduce(trainer, tensor: Tensor, op, group) -> Tensor:  # noqa: ANN001
    """All-reduce on the strategy's device (NCCL reduces no host tensor), returned where it was."""
    moved = tensor.to(trainer.strategy.root_device)
    dist.all_reduce(moved, op=op, group=group)
    return moved.to(tensor.device)


def shards(trainer) -> Shards:  # noqa: ANN001
    """How the rank's partial counts combine: sums and extrema over its shard group (LOCAL unsharded)."""
    mesh = _mesh_of(trainer)
    if mesh is None or mesh[SHARD_DIM].size() == 1:
        return LOCAL
    group = mesh[SHARD_DIM].get_group()

    def extreme(x: float, op) -> float:  # noqa: ANN001
        return float(_all_reduce(trainer, torch.tensor(x, dtype=torch.float64), op, group))

    return Shards(
        sum=lambda t: _all_reduce(trainer, t, dist.ReduceOp.SUM, group),
        min=lambda x: extreme(x, dist.ReduceOp.MIN),
        max=lambda x: extreme(x, dist.ReduceOp.MAX),
    )


def replica_sum(trainer, tensor: Tensor) -> Tensor:  # noqa: ANN001
    """Sum over the ranks that hold the same rows but scored other batches (DDP: all ranks)."""
    if trainer.world_size == 1:
        return tensor
    mesh = _mesh_of(trainer)
    if mesh is None:
        return _all_reduce(trainer, tensor, dist.ReduceOp.SUM, None)
    if mesh[REPLICA_DIM].size() == 1:
        return tensor
    return _all_reduce(trainer, tensor, dist.ReduceOp.SUM, mesh[REPLICA_DIM].get_group())


def shard_rank(trainer) -> int:  # noqa: ANN001
    """This rank's place in its shard group (0 when unsharded): rank 0 records what the group shares."""
    mesh = _mesh_of(trainer)
    return 0 if mesh is None else mesh[SHARD_DIM].get_local_rank()
