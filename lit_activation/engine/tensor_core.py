"""A bit-level model of how a tensor core adds fp32 sums, to reason about split products without a GPU.

One Hopper `wgmma` step aligns 16 exact bf16 products and the accumulator, adds them exactly and
truncates the sum toward zero to fp32 (MMA-Sim, Xie et al. 2025). Pure functions on fp64 tensors,
slow, for the tests and benchmarks/tensor_cores.py (docs/design.md, "How a tensor core adds").
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_activation.engine.split import pairs, split_bf16

STEP = 16  # products per Hopper bf16 wgmma step (m64nNk16)
FRACTION_BITS = 25  # alignment width of a step's addends, below the largest one's leading bit


MIN_EXPONENT = -126  # fp32's and bf16's smallest normal exponent: subnormals and zero align as 2^-126


def _exponents(x: Tensor) -> Tensor:
    """The exponent each value aligns with: floor(log2 |x|), at least MIN_EXPONENT (zero included)."""
    _, e = torch.frexp(x)
    return torch.where(x == 0, torch.full_like(e, MIN_EXPONENT), (e - 1).clamp_min(MIN_EXPONENT))


def truncate_to_fp32(x: Tensor) -> Tensor:
    """fp64 values rounded toward zero to fp32 (torch rounds to nearest; step back where it went up).

    Finite values beyond fp32's range give ±FLT_MAX here, as IEEE's rounding toward zero does;
    `tensor_core_matmul` sends them to ±inf, as the hardware does.
    """
    y = x.float()
    up = y.double().abs() > x.abs()
    return torch.where(up, torch.nextafter(y, torch.zeros_like(y)), y)


def tensor_core_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b as a Hopper tensor core forms it from bf16 operands: fp32 result (model above).

    a: (..., M, K), b: (..., K, N), holding bf16 values (any float dtype); one chain over all of K.
    Like MMA-Sim: a product aligns with the sum of its factors' exponents (its significand may reach
    4); a result beyond fp32's range is ±inf, and an inf or NaN, once in the accumulator, stays.
    """
    a, b = a.double(), b.double()
    if b.shape[-2] != a.shape[-1]:
        raise ValueError(f"shapes do not match: {tuple(a.shape)} @ {tuple(b.shape)}")
    ea, eb = _exponents(a), _exponents(b)
    acc = torch.zeros(*a.shape[:-1], b.shape[-1], dtype=torch.float32)
    for k in range(0, a.shape[-1], STEP):
        products = a[..., :, k : k + STEP, None] * b[..., None, k : k + STEP, :]  # (..., M, 16, N), exact
        e = ea[..., :, k : k + STEP, None] + eb[..., None, k : k + STEP, :]
        c = acc.double()
        top = torch.maximum(e.amax(dim=-2), _exponents(c))
        quantum = torch.ldexp(torch.ones_like(c), top - FRACTION_BITS)
        aligned = (torch.trunc(products / quantum.unsqueeze(-2)).sum(dim=-2) + torch.trunc(c / quantum)) * quantum
        # exact in fp64: at most 17 integers below 2^27 quanta each, scaled by a power of two
        step = truncate_to_fp32(aligned)  # fp32, ±FLT_MAX beyond its range: that is ±inf here
        step = torch.where(aligned.abs() >= 2.0**128, torch.copysign(torch.full_like(step, float("inf")), step), step)
        plain = products.sum(dim=-2) + c  # not finite once an inf or NaN takes part: carried as is
        acc = torch.where(torch.isfinite(plain), step, plain.float())
    return acc


def tensor_core_bf16_matmul(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """`tensor_core_matmul` in the place of engine/split.py's `bf16_matmul` (same arguments), so the
    engine's own split code can be run through the model."""
    result = tensor_core_matmul(a, b)
    return result if out is None else out.copy_(result)


def cuda_core_matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b of fp32 values as a CUDA-core GEMM forms it: one fp32 multiply-add per k, to nearest.

    Each output's K products are accumulated in order, as in cuBLAS's SGEMM (no split over K). Each
    step rounds to fp64 and then to fp32 (a true fused multiply-add rounds once: rarely an ulp apart).
    """
    a, b = a.float().double(), b.float().double()
    acc = torch.zeros(*a.shape[:-1], b.shape[-1], dtype=torch.float32)
    for k in range(a.shape[-1]):
        # the product of two fp32 values is exact in fp64
        acc = (acc.double() + a[..., :, k, None] * b[..., None, k, :]).float()
    return acc


def fused_linear_model(x: Tensor, weight: Tensor, chain: int, block_k: int) -> Tensor:
    """x·Wᵀ summed in the order engine/linear_kernel.py documents, on the model above: per K block
    of `block_k`, the small part products before x₀·W₀; each chain of `chain` of K from zero; the
    chains' sums added in IEEE fp32 (the kernel's promotion). x: (M, K), weight: (N, K); fp32 result."""
    xp, wp = split_bf16(x.float()), split_bf16(weight)
    order = pairs(len(xp), len(wp))  # smallest first, (0, 0) last: the kernel's order within a K block
    total = torch.zeros(x.shape[0], weight.shape[0], device=x.device)
    for c0 in range(0, x.shape[1], chain):
        end = min(c0 + chain, x.shape[1])
        blocks = [slice(k0, min(k0 + block_k, end)) for k0 in range(c0, end, block_k)]
        left = torch.cat([xp[i][:, b] for b in blocks for i, _ in order], dim=1)
        right = torch.cat([wp[j][:, b] for b in blocks for _, j in order], dim=1)
        total = (total.double() + tensor_core_matmul(left, right.t()).double()).float()
    return total
