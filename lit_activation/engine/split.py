"""fp32-accurate products from bfloat16 parts, for tensor cores (docs/method.md §9).

An fp32 value x splits exactly into three bf16 parts, x = x₀ + x₁ + x₂, each the bf16 rounding of
what the parts before it left over: fp32 carries 24 significant bits and each part takes the next
8. A product of two bf16 values is exact in fp32, and a tensor core adds such products in fp32.
So a product a·b of fp32 operands is formed from the part products aᵢ·bⱼ with i + j ≤ 2; the
ones left out are below 2⁻²⁴ of |a|·|b|, the size of fp32's own rounding. That is 6 bf16
products for fp32 × fp32 and 3 when one operand is bf16 already (the stored weights of a bf16
model, exact in one part). On a GPU they run at bf16 tensor-core rate, several times the fp32
rate of the CUDA cores, in one kernel each: the parts are laid side by side along the summed
dimension (K), so the accumulation stays inside the kernel, in fp32.

On a CPU the part products are formed in fp32 from the upcast parts: bit for bit what a tensor
core computes up to the order of the fp32 additions, so the algebra is tested without a GPU.
These are pure functions of tensors; the engine chooses them (engine.products).
"""

from __future__ import annotations

import torch
from torch import Tensor

PARTS = 3  # bf16 parts of an fp32 value: 3 × 8 significant bits hold fp32's 24


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


def bf16_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b of bf16 tensors (2-D or batched 3-D) with products and sums in fp32, result fp32.

    CUDA: cuBLAS bf16 GEMM with an fp32 output (`out_dtype`), so the result is never rounded to
    bf16. Elsewhere: the same arithmetic on the upcast parts (a bf16 product is exact in fp32).
    """
    if a.is_cuda:
        return torch.bmm(a, b, out_dtype=torch.float32) if a.dim() == 3 else torch.mm(a, b, out_dtype=torch.float32)
    return torch.matmul(a.float(), b.float())


def pairs(left: int, right: int) -> list[tuple[int, int]]:
    """The part products (i, j) kept: order i + j ≤ 2, i.e. above fp32's rounding."""
    return [(i, j) for i in range(left) for j in range(right) if i + j < PARTS]


def concat_left(parts: list[Tensor], right: int) -> Tensor:
    """The left operand's parts laid along its last (summed) dimension, one per kept product."""
    return torch.cat([parts[i] for i, _ in pairs(len(parts), right)], dim=-1)


def concat_right(parts: list[Tensor], left: int) -> Tensor:
    """The right operand's parts laid along its summed dimension (-2), matching `concat_left`."""
    return torch.cat([parts[j] for _, j in pairs(left, len(parts))], dim=-2)


def split_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b to fp32 accuracy from bf16 part products (one bf16 GEMM over a K of 3-6 × K).

    a: (..., M, K), b: (..., K, N), fp32 or bf16; returns fp32 (..., M, N).
    """
    a_parts, b_parts = split_bf16(a), split_bf16(b)
    return bf16_matmul(concat_left(a_parts, len(b_parts)), concat_right(b_parts, len(a_parts)))


def split_linear(x: Tensor, weight: Tensor) -> Tensor:
    """x @ weightᵀ to fp32 accuracy; weight (out, in) as stored (bf16: exact in one part).

    The parts of x are stacked along the rows (M) rather than K, so a bf16 weight is read as it
    is stored, never copied: three row blocks of products, added in fp32 (smallest first).
    """
    x_parts = split_bf16(x.reshape(-1, x.shape[-1]))
    rows = x_parts[0].shape[0]
    terms: list[tuple[int, Tensor]] = []
    for j, w in enumerate(split_bf16(weight)):
        used = x_parts[: PARTS - j]
        blocks = bf16_matmul(torch.cat(used, 0), w.t())
        terms += [(i + j, blocks[i * rows : (i + 1) * rows]) for i in range(len(used))]
    terms.sort(key=lambda term: -term[0])
    total = terms[0][1]
    for _, term in terms[1:]:
        total = total + term
    return total.reshape(*x.shape[:-1], weight.shape[0])
