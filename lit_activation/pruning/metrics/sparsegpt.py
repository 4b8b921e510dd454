"""SparseGPT (Frantar & Alistarh, ICML 2023): each linear pruned column by column with Optimal Brain
Surgeon updates of the weights it keeps, from the Hessian H = 2XXᵀ of its calibration inputs."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig

from lit_activation.distributed.shards import Shards
from lit_activation.models.architectures import fake_model
from lit_activation.models.layers import block_prunable, decoder_layers, stored_transposed, weight_out_in
from lit_activation.planning import simulate
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.context import Calibration, PruningContext
from lit_activation.pruning.expert_inputs import ExpertInputs, expert_key
from lit_activation.pruning.masks import decided_weight
from lit_activation.pruning.metrics.base import PruningMetric
from lit_activation.pruning.sequential import BlockInputs, calibration_inputs, input_hessians
from lit_activation.pruning.sparsity import check_nm

Select = Callable[[Tensor, float], Tensor]  # (a mask group's saliencies, sparsity) -> its mask, True = pruned


def lowest_k(saliency: Tensor, sparsity: float) -> Tensor:
    """Mask of the ⌊numel · sparsity⌋ lowest values of a mask group (rows, columns), True = pruned.

    Exactly that many, whatever the ties: the sort is stable over the row-major order, so among
    equal values the lower row, then the lower column, goes first (the reference prunes every value
    <= the k-th, one more than k and any value tied with it).
    """
    flat = saliency.flatten()
    k = int(flat.numel() * sparsity)
    order = flat.argsort(stable=True)[:k] if k else None
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if order is not None:
        mask[order] = True
    return mask.view(saliency.shape)


def lowest_n_per_row(saliency: Tensor, n: int) -> Tensor:
    """Mask of the n lowest values of every row of an N:M group (rows, m); ties to the lower column."""
    mask = torch.zeros_like(saliency, dtype=torch.bool)
    return mask.scatter_(1, saliency.argsort(dim=1, stable=True)[:, :n], True)


def gathered_lowest_k(rows: int, offset: int, shards: Shards) -> Select:
    """`lowest_k` over all `rows` of a group on a rank holding rows [offset, offset + own): the ranks'
    saliencies are summed into one zero-filled (rows, columns) tensor (exact: each entry is one rank's
    value plus zeros), every rank selects from the same values by the same rule, and keeps its own rows."""

    def select(saliency: Tensor, sparsity: float) -> Tensor:
        own = saliency.shape[0]
        full = saliency.new_zeros(rows, saliency.shape[1])
        full[offset : offset + own] = saliency
        return lowest_k(shards.sum(full), sparsity)[offset : offset + own]

    return select


def dampen(hessian: Tensor, percdamp: float) -> Tensor:
    """H made invertible in place, as the reference does: a dead input (H_ii = 0: always zero over the
    calibration tokens) gets H_ii = 1, then λ = percdamp · mean(diag H) is added to the diagonal.
    Returns the dead inputs (bool, one per column): their weights are to be zeroed."""
    diagonal = hessian.diagonal()
    dead = diagonal == 0
    diagonal.masked_fill_(dead, 1)
    diagonal.add_(percdamp * diagonal.mean())
    return dead


def current_columns(weight: Tensor, errors: Tensor, hinv: Tensor, i1: int, i: int, i2: int, stop: int) -> Tensor:
    """Columns [i, stop) of `weight` as the column-by-column algorithm has them when it reaches column
    i, inside the lazy block [i1, i2): the block's own columns already are; later ones still owe the
    block's updates so far, errors[:, :i − i1] @ hinv[i1:i, i2:stop] (the lazy update adds them at the
    block's end). So a mask group may start anywhere in a lazy block: the block size changes no mask."""
    inside = min(stop, i2)
    current = torch.empty(weight.shape[0], stop - i, dtype=weight.dtype, device=weight.device)
    current[:, : inside - i] = weight[:, i:inside]
    if stop > i2:
        current[:, inside - i :] = weight[:, i2:stop]
        current[:, inside - i :].addmm_(errors[:, : i - i1], hinv[i1:i, i2:stop], alpha=-1)
    return current


@contextlib.contextmanager
def serial(device: torch.device) -> Iterator[None]:
    """One CPU thread for the column loop: its operations touch one column and one lazy block's width,
    too little to share, and on a busy CPU every parallel region waits for its slowest thread (measured
    on 2 shared cores: 20x slower with 2 threads than with 1). Other devices: nothing changes."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def obs_prune(
    weight: Tensor, hinv: Tensor, sparsity: float, n: int = 0, m: int = 0, blocksize: int = 128, mask_group: int = 128, select: Select = lowest_k
) -> None:
    """Prune `weight` (rows, columns; fp32, in place) column by column, each pruned weight's error
    spread over the columns not yet visited by the OBS update (SparseGPT, Algorithm 1).

    hinv: U, the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU, H damped). Visiting column j with the
    columns F = {j, …} still free, U[j, j:] = [H_F⁻¹]_{j,:} / √[H_F⁻¹]_jj, so with e = (w_j − q_j) / U_jj
    the update W[:, j:] −= e ⊗ U[j, j:] is OBS's δ_F = −(w_j − q_j) / [H_F⁻¹]_jj · [H_F⁻¹]_{:,j}.
    Masks: unstructured, per group of `mask_group` columns, the ⌊rows · columns · s⌋ lowest saliencies
    w² / U_cc² of the group (`select`), from the weights as updated when the group starts; N:M, the n
    lowest of every m consecutive columns of a row, chosen when the column index reaches a multiple of m.
    Updates are applied lazily, `blocksize` columns at a time (exact: the same updates, grouped).
    """
    rows, columns = weight.shape
    d = hinv.diagonal()
    width = m if m else mask_group
    mask, first = None, 0
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        block = weight[:, i1:i2]  # a view: the block's columns are updated in place
        errors = torch.zeros(rows, i2 - i1, dtype=weight.dtype, device=weight.device)
        with serial(weight.device):
            for i in range(i1, i2):
                if i % width == 0:  # a new mask group: the previous one's columns are all visited
                    mask = removed = None  # (a view of it, too)
                    stop = min(i + width, columns)
                    saliency = current_columns(weight, errors, hinv, i1, i, i2, stop).square_().div_(d[i:stop].square())
                    mask, first = (lowest_n_per_row(saliency, n) if m else select(saliency, sparsity)), i
                    del saliency
                r, removed = i - i1, mask[:, i - first]
                error = torch.where(removed, block[:, r], 0) / d[i]
                block[:, r + 1 :].addr_(error, hinv[i, i + 1 : i2], alpha=-1)
                block[:, r].masked_fill_(removed, 0)
                errors[:, r] = error
        weight[:, i2:].addmm_(errors, hinv[i1:i2, i2:], alpha=-1)
        del errors  # before the next block's: one block's errors at a time


def pruned_count(rows: int, columns: int, sparsity: float, n: int = 0, m: int = 0, mask_group: int = 128) -> int:
    """How many weights of a (rows, columns) weight SparseGPT prunes: n of every m, or per mask group ⌊rows · columns · s⌋."""
    if m:
        return rows * (columns // m) * n
    return sum(int(rows * (min(start + mask_group, columns) - start) * sparsity) for start in range(0, columns, mask_group))


def _positive_int(name: str, value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"SparseGPT {name} must be an integer >= 1 ({what}), got {value!r}")
    return value


class SparseGPT(PruningMetric):
    """SparseGPT: per linear, H = 2·Σ x xᵀ over every calibration token (a sum in fp32: the reference's
    running mean (2/n)·Σ x xᵀ differs by a constant, which changes no mask and no update), then the
    columns are pruned in order and each pruned weight's error is compensated by OBS updates of the
    row's weights not yet visited (`obs_prune`); the kept weights are stored back in the module's dtype.
    Run sequentially, block by block, on the calibration inputs of the model as pruned so far.

    Args:
        blocksize: columns per lazy batch update (the reference's 128). It groups the same updates
            differently and changes no mask; the weights only within fp32 rounding.
        mask_group: columns whose unstructured mask is chosen together, from the weights as updated
            when the group starts (the reference's 128, where it is the lazy block). Not used by N:M,
            which chooses n of every m columns when it reaches them.
        percdamp: λ = percdamp · mean(diag H) is added to H's diagonal (the reference's 0.01).

    Cost, per module of r rows and c inputs over T calibration tokens: 2·T·c² multiply-adds for H,
    about c³ for the inverse's Cholesky factors, r·c² for the updates, and one sort per mask group.
    Memory: one fp32 H (c × c) per module, all of a block's at once while its inputs run (0.48 GB
    for Llama-2-7B's down_proj, 11008 inputs); then, one module at a time, an fp32 copy of its weight
    (a sharded rank: its own rows), a second c × c matrix while the factors are formed, and a
    mask group's saliencies. On a sharded run every rank holds every H (each sees the same
    calibration inputs) and updates its own rows; a group's unstructured mask is chosen from every
    row's saliencies, summed over the shard group, so that it is the one process's.
    """

    def __init__(self, blocksize: int = 128, mask_group: int = 128, percdamp: float = 0.01) -> None:
        self.blocksize = _positive_int("blocksize", blocksize, "columns per lazy batch update")
        self.mask_group = _positive_int("mask_group", mask_group, "columns whose mask is chosen together")
        if isinstance(percdamp, bool) or not isinstance(percdamp, (int, float)) or not (math.isfinite(percdamp) and percdamp >= 0):
            raise ValueError(f"SparseGPT percdamp must be a finite number >= 0 (λ = percdamp · mean(diag H)), got {percdamp!r}")
        self.percdamp = float(percdamp)

    def input_statistics(
        self, block: nn.Module, inputs: BlockInputs, experts: ExpertInputs | None = None, tokens: dict[str, int] | None = None,
    ) -> dict[str, Tensor]:
        return input_hessians(block, inputs, experts, tokens)

    def prune(self, name: str, module: nn.Module, statistic: Tensor, sparsity: float, n: int, m: int, context: PruningContext) -> float:
        """OBS-prune one linear in place from its H (`statistic`, consumed: the caller passes its only
        reference, so H's memory goes as soon as its Cholesky factor exists)."""
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"Sparsity {sparsity} is outside [0, 1)")
        check_nm(sparsity, n, m)
        weight = module.weight.detach()
        rows, columns = weight_out_in(module, weight).shape  # the whole module's, also on a sharded rank
        if m and columns % m:
            raise ValueError(f"N:M with m={m} needs in_features divisible by m, got {columns} ({name})")
        percdamp = self.percdamp
        routed = context.expert_tokens.get(expert_key(name)) if context is not None else None  # an expert's tokens (None: no expert)
        if routed is not None and routed < context.expert_inputs.min_tokens:  # few tokens: H says little, lean on damping
            percdamp = max(percdamp, context.expert_inputs.few_tokens_damping)
            if routed == 0:  # no token at all: H = I, plain magnitude within the OBS order, no column dropped as dead
                statistic = torch.eye(statistic.shape[0], dtype=statistic.dtype, device=statistic.device)
        dead = dampen(statistic, percdamp)
        try:  # three steps, each result rebinding the name: two c × c matrices at most, as in the reference
            statistic = torch.linalg.cholesky(statistic)
            statistic = torch.cholesky_inverse(statistic)
            hinv = torch.linalg.cholesky(statistic, upper=True)
        except torch.linalg.LinAlgError:
            raise ValueError(f"{name}: H + λI is not positive definite (percdamp {percdamp}); raise percdamp") from None
        del statistic
        decided = decided_weight(module)
        work = decided.weight.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
        stored, own, first_row = decided.stored, decided.own, decided.first_row
        del decided  # a gathered Conv1D's full weight: only its fp32 copy is needed now
        work.masked_fill_(dead, 0)
        # a sharded Linear: every rank of the group takes part in each group's selection (a collective)
        select = lowest_k if first_row is None else gathered_lowest_k(rows, first_row, context.shards)
        obs_prune(work, hinv, sparsity, n, m, self.blocksize, self.mask_group, select)
        stored.copy_(own(work))
        return pruned_count(rows, columns, sparsity, n, m, self.mask_group) / (rows * columns)

    def memory_needs(self, plan: PlanContext, calibration: Calibration) -> Footprint:
        """All of a block's H while its inputs run (beside the calibration pass the plan counts), then,
        with the block's calibration inputs held, the H not yet used and one module's solve."""
        shapes = block_shapes(plan.config, plan.dtype)
        needs = Footprint().add("pruning", "SparseGPT H of one block (fp32)", sum(4 * c * c for _, c, _ in shapes))
        if plan.dtype != torch.float32:  # each hook's inputs, copied to fp32 for H
            needs.add("pruning", "SparseGPT inputs of one chunk (fp32)", calibration.batch_size * calibration.seqlen * max(c for _, c, _ in shapes) * 4)
        phase = "pruning, SparseGPT solve"
        held = plan.peak(calibration_inputs, calibration.samples, calibration.seqlen, calibration.batch_size)
        needs.add(phase, "calibration inputs held", held)
        return needs.add(phase, "SparseGPT H left + one module's solve", solve_peak(shapes, plan.shards, plan.dtype.itemsize, self.blocksize, self.mask_group))


@simulate.cached
def block_shapes(config: PretrainedConfig, dtype: torch.dtype) -> tuple[tuple[int, int, bool], ...]:
    """(rows, inputs, stored transposed) of each unit of one decoder block, in the order pruning visits them,
    from a fake model: its linears, and in a mixture of experts every expert's slices (an H each)."""
    model = fake_model(simulate.one_block_config(config), dtype, simulate.FakeTensorMode())
    block = decoder_layers(model)[1][-1]  # the last: a model whose first blocks are dense (DeepSeek) plans an MoE block
    return tuple((*weight_out_in(m).shape, stored_transposed(m)) for m in block_prunable(block).values())


def solve_peak(shapes: Sequence[tuple[int, int, bool]], shards: int, itemsize: int, blocksize: int, mask_group: int) -> int:
    """Bytes SparseGPT holds while it solves a block's modules in turn: the H of the modules not yet
    solved, and for module j either its H beside its first Cholesky factor, or its inverse factor U,
    its weight's fp32 copy, one lazy block's errors and an unstructured mask group's saliencies with
    their stable sort (fp32 values, int64 indices; a sharded Linear's group is summed over every row
    first). N:M sorts groups of m columns, less: planned as unstructured, the larger."""
    hessians = [4 * c * c for _, c, _ in shapes]
    peak = 0
    for j, (out, c, conv1d) in enumerate(shapes):
        sharded_rows = shards > 1 and not conv1d
        rows = -(-out // shards) if sharded_rows else out  # a sharded rank's rows of a Linear (torch.chunk: ceil)
        group = min(mask_group, c)
        sort = 4 * rows * group + 16 * out * group if sharded_rows else 16 * rows * group
        gathered = out * c * itemsize if conv1d and shards > 1 else 0  # a sharded Conv1D's weight, gathered to be copied
        solve = hessians[j] + 4 * rows * c + max(gathered, 4 * rows * min(blocksize, c) + sort)
        peak = max(peak, sum(hessians[j + 1 :]) + max(2 * hessians[j], solve))
    return peak
