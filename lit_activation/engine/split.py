"""fp32-accurate products from bfloat16 parts, for tensor cores (docs/method.md §9).

An fp32 value splits exactly into three bf16 parts; a product of fp32 operands is the sum of the
part products whose rounding fp32 would not hide (6, or 3 when one side is bf16 already), laid
side by side along K so that one GEMM adds them, small ones first and the full-scale ones in short
chains. Pure functions of tensors, exact on a CPU; why this order: docs/design.md, "Split products".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

PARTS = 3  # bf16 parts of an fp32 value: 3 × 8 significant bits hold fp32's 24
# A full-scale chain spans at most CHAIN_SCALE·√K of K (a power of two, at least MIN_CHAIN). The
# modelled error of a chain grows with its length L, a CUDA-core GEMM's with √K; at L = 16√K the
# two are equal (benchmarks/tensor_cores.py). 0 turns chains off (one chain over all of K).
CHAIN_SCALE = 16
MIN_CHAIN = 128
ALIGN = 128  # chain lengths are multiples of this: chains start aligned (cuBLAS's fast kernels want it)


def split_bf16(x: Tensor, parts: int = PARTS) -> list[Tensor]:
    """bf16 tensors whose sum is x (exact for fp32 x of normal magnitude when parts = 3).

    Each part is the bf16 rounding of the remainder; the remainder of a rounding is exact in
    fp32, so nothing is lost between the parts. A bf16 x is returned as its only part.
    """
    if x.dtype == torch.bfloat16:
        return [x]
    rest = x.float()
    out = []
    for _ in range(parts):
        part = rest.to(torch.bfloat16)
        out.append(part)
        rest = rest - part.float()
    return out


def bf16_matmul(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """a @ b of bf16 values (2-D or batched 3-D) with products and sums in fp32, result fp32.

    CUDA: cuBLAS bf16 GEMM with an fp32 output (`out_dtype`), so the result is never rounded to
    bf16. Elsewhere (or for operands already upcast): the same arithmetic in fp32 (a bf16 product
    is exact in fp32). `out`: an fp32 tensor of the result's shape to write into.
    """
    if a.is_cuda and a.dtype == torch.bfloat16:
        mm = torch.bmm if a.dim() == 3 else torch.mm
        try:
            return mm(a, b, out_dtype=torch.float32) if out is None else mm(a, b, out_dtype=torch.float32, out=out)
        except torch.cuda.OutOfMemoryError:
            raise
        except (RuntimeError, TypeError):  # a torch without `out_dtype` into `out`
            if out is None:
                raise
            return out.copy_(mm(a, b, out_dtype=torch.float32))
    return torch.matmul(a.float(), b.float(), out=out)


_FUSED_ADD: dict[str, bool] = {}  # per torch op: whether it adds an fp32 total in the GEMM's epilogue here


def accumulate(total: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """total += a @ b (bf16 values, fp32 sums); the addition to `total` is one IEEE fp32 rounding.

    CUDA: cuBLAS adds `total` in the GEMM's epilogue (fp32, to nearest), one pass over the output;
    where this torch cannot, each chain takes a second pass (logged once).
    """
    if a.is_cuda and a.dtype == torch.bfloat16:
        result = in_epilogue(torch.baddbmm if a.dim() == 3 else torch.addmm, total, a, b)
        if result is not None:
            return result
    return total.add_(bf16_matmul(a, b))


def in_epilogue(add: Callable[..., Tensor], total: Tensor, a: Tensor, b: Tensor) -> Tensor | None:
    """add(total, a, b) into `total` with bf16 operands and fp32 sums, or None (logged once per op)
    where this torch does not take that form. Running out of memory is not such a case: it raises."""
    name = getattr(add, "__name__", str(add))
    if not _FUSED_ADD.get(name, True):
        return None
    try:
        # `out` must be `total` itself: some torch versions hand `out` to cuBLAS as its C
        result = add(total, a, b, out_dtype=torch.float32, out=total)
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, TypeError) as err:
        _FUSED_ADD[name] = False
        log.warning("torch.%s cannot add an fp32 total to a bf16 product here (%s); split products add each chain in a second pass", name, err)
        return None
    return result


def chain_length(k: int) -> int:
    """How much of K one full-scale tensor-core chain sums: the largest power of two ≤ CHAIN_SCALE·√k,
    at least MIN_CHAIN (k itself when that is shorter, or when chains are off)."""
    if CHAIN_SCALE <= 0:
        return k
    longest = max(CHAIN_SCALE * math.sqrt(k), MIN_CHAIN)
    return min(k, 2 ** int(math.floor(math.log2(longest))))


def chain_step(full: int) -> int:
    """The length of the chains over a full-scale span of `full`: as many chains as chain_length fits
    (to the nearest, at least one), the span shared evenly and rounded up to a multiple of ALIGN, so
    that no chain is a short remainder (each further chain costs a pass over the output)."""
    chains = max(1, round(full / chain_length(full)))
    step = -(-full // chains)
    return min(full, -(-step // ALIGN) * ALIGN)


def chain_bounds(k: int, full: int) -> tuple[int, int]:
    """(where the first chain ends, the length of each further one) along a K whose last `full`
    entries carry full-scale products: the small part products and the first chain are one."""
    if not 0 < full <= k:
        raise ValueError(f"full must be in 1..{k} (the full-scale span of K); got {full}")
    step = chain_step(full)
    return k - full + step, step


def chained_matmul(a: Tensor, b: Tensor, full: int, out: Tensor | None = None) -> Tensor:
    """a @ b of bf16 values whose last `full` entries of K carry full-scale products, the rest small
    ones: the small ones and the first chain in one GEMM, each further chain added in fp32.

    a: (..., M, K), b: (..., K, N); out: optional fp32 (..., M, N). Returns fp32.
    """
    cut, step = chain_bounds(a.shape[-1], full)
    return add_in_chains(bf16_matmul(a[..., :cut], b[..., :cut, :], out=out), a, b, cut, step)


def add_in_chains(total: Tensor | None, a: Tensor, b: Tensor, start: int, step: int) -> Tensor:
    """total + a[..., start:] @ b[..., start:, :], one chain of `step` of K at a time, each chain's
    sum added in fp32 (`accumulate`); with no total yet, the first chain is it."""
    for first in range(start, a.shape[-1], step):
        chain_a, chain_b = a[..., first : first + step], b[..., first : first + step, :]
        total = bf16_matmul(chain_a, chain_b) if total is None else accumulate(total, chain_a, chain_b)
    return total


def pairs(left: int, right: int) -> list[tuple[int, int]]:
    """The part products (i, j) kept (order i + j ≤ 2, i.e. above fp32's rounding), smallest first:
    along K the accumulator stays small while they are added, and (0, 0) comes last."""
    kept = [(i, j) for i in range(left) for j in range(right) if i + j < PARTS]
    return sorted(kept, key=lambda ij: -(ij[0] + ij[1]))


def concat_left(parts: list[Tensor], right: int) -> Tensor:
    """The left operand's parts laid along its last (summed) dimension, one per kept product."""
    return torch.cat([parts[i] for i, _ in pairs(len(parts), right)], dim=-1)


def concat_right(parts: list[Tensor], left: int) -> Tensor:
    """The right operand's parts laid along its summed dimension (-2), matching `concat_left`."""
    return torch.cat([parts[j] for _, j in pairs(left, len(parts))], dim=-2)


def split_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b to fp32 accuracy from bf16 part products (bf16 GEMMs over a K of 3-6 × K).

    a: (..., M, K), b: (..., K, N), fp32 or bf16; returns fp32 (..., M, N).
    """
    a_parts, b_parts = split_bf16(a), split_bf16(b)
    left, right = concat_left(a_parts, len(b_parts)), concat_right(b_parts, len(a_parts))
    return chained_matmul(left, right, full=a.shape[-1])


def split_linear(x: Tensor, weight: Tensor) -> Tensor:
    """x @ weightᵀ to fp32 accuracy; weight (out, in) as stored (bf16: exact in one part).

    The parts of x are stacked along the rows (M) rather than K, so a bf16 weight is read as it
    is stored, never copied: the small part products as row blocks of one GEMM per weight part,
    added in fp32 smallest first, then the full-scale x₀·W₀ᵀ in chains along K.
    """
    x_parts, w_parts = split_bf16(x.reshape(-1, x.shape[-1])), split_bf16(weight)
    rows = x_parts[0].shape[0]
    terms: list[tuple[int, Tensor]] = []  # (order i + j, x_i·W_jᵀ) for every kept pair but (0, 0)
    for j, w in enumerate(w_parts):
        first = 1 if j == 0 else 0
        used = x_parts[first : PARTS - j]
        if used:
            blocks = bf16_matmul(torch.cat(used, 0), w.t())
            terms += [(first + n + j, blocks[n * rows : (n + 1) * rows]) for n in range(len(used))]
    terms.sort(key=lambda term: -term[0])
    total = None
    for _, term in terms:
        total = term if total is None else total + term
    total = add_in_chains(total, x_parts[0], w_parts[0].t(), 0, chain_step(x.shape[-1]))
    return total.reshape(*x.shape[:-1], weight.shape[0])
