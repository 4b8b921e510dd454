"""One Triton kernel for a scored linear's fp32 products x·Wᵀ and δ·W, split into bf16 parts in registers.

One pass over x, W and the output instead of a GEMM per group of part products with the parts in
memory; the same order along K as engine/split.py. CUDA with triton only, opt-in
(`EngineSettings.fused_linear`); how it loads and why: docs/design.md, "The fused kernels".
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_activation.engine import kernels
from lit_activation.engine.split import chain_length, pairs

if kernels.triton is not None:
    import triton
    import triton.language as tl

    from lit_activation.engine.kernels import program_block

# A GEMM-sized tile that compiles for sm_90 without spilling (191 registers with TMA loads, 250 with
# pointers; benchmarks/compile_check.py); 128 × 128 × 64 is in the GPU sweep, 128 × 256 spills.
BLOCK_M, BLOCK_N, BLOCK_K = 128, 128, 32
NUM_WARPS, NUM_STAGES, GROUP_M = 8, 3, 8
WEIGHT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def kernel_chain(k: int, products: int, block_k: int | None = None) -> int:
    """How much of K one chain accumulator sums before it is promoted into the fp32 total: with
    `products` part products per K block, at most chain_length(k) products' worth of K (a
    multiple of the K block, at least one block)."""
    block_k = block_k or BLOCK_K
    return max(block_k, chain_length(k) // products // block_k * block_k)


if kernels.triton is not None:

    @triton.jit
    def _dot(a, b, acc, UPCAST: tl.constexpr):  # noqa: N803
        if UPCAST:  # the interpreter's bf16 dot is wrong (kernels.interpreted); the products are exact in fp32
            return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        return tl.dot(a, b, acc)

    @triton.jit
    def _parts(v):
        """The three bf16 parts of fp32 v (engine/split.py's split_bf16, in registers)."""
        p0 = v.to(tl.bfloat16)
        rest = v - p0.to(tl.float32)
        p1 = rest.to(tl.bfloat16)
        return p0, p1, (rest - p1.to(tl.float32)).to(tl.bfloat16)

    @triton.jit
    def _block_products(xb, wb, chain, W_PARTS: tl.constexpr, UPCAST: tl.constexpr):  # noqa: N803
        """chain + xb @ wb from their parts, the small part products first (split.pairs)."""
        x0, x1, x2 = _parts(xb)
        if W_PARTS == 1:  # bf16 values (stored so, or gathered in fp32 by FSDP): exact as they are
            w0 = wb.to(tl.bfloat16)
            chain = _dot(x2, w0, chain, UPCAST)
            chain = _dot(x1, w0, chain, UPCAST)
        else:  # split.pairs(3, 3), smallest first
            w0, w1, w2 = _parts(wb.to(tl.float32))
            chain = _dot(x0, w2, chain, UPCAST)
            chain = _dot(x1, w1, chain, UPCAST)
            chain = _dot(x2, w0, chain, UPCAST)
            chain = _dot(x0, w1, chain, UPCAST)
            chain = _dot(x1, w0, chain, UPCAST)
        return _dot(x0, w0, chain, UPCAST)

    @triton.jit
    def _linear(
        x, w, out, m, n, k, chain_k,
        x_m, x_k, w_n, w_k, o_m, o_n,
        W_PARTS: tl.constexpr, UPCAST: tl.constexpr, TMA: tl.constexpr, W_KN: tl.constexpr,  # noqa: N803
        BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP: tl.constexpr,  # noqa: N803
    ):  # fmt: skip
        """TMA: x and w are tensor descriptors, w laid (k, n) if W_KN else (n, k); else pointers."""
        row0, col0 = program_block(m, n, BM, BN, GROUP)
        rows, cols = row0 + tl.arange(0, BM), col0 + tl.arange(0, BN)
        ks = tl.arange(0, BK)
        in_rows, in_cols = rows[:, None] < m, cols[None, :] < n
        total = tl.zeros((BM, BN), dtype=tl.float32)
        for c0 in range(0, k, chain_k):
            chain = tl.zeros((BM, BN), dtype=tl.float32)
            for k0 in range(c0, tl.minimum(c0 + chain_k, k), BK):
                if TMA:  # beyond the tensor a descriptor reads zeros: no masks
                    xb = x.load([row0, k0])
                    if W_KN:
                        wb = w.load([k0, col0])
                    else:
                        wb = w.load([col0, k0]).T
                else:
                    kk = k0 + ks
                    xb = tl.load(x + rows[:, None] * x_m + kk[None, :] * x_k, mask=in_rows & (kk[None, :] < k), other=0.0)
                    wb = tl.load(w + kk[:, None] * w_k + cols[None, :] * w_n, mask=(kk[:, None] < k) & in_cols, other=0.0)
                chain = _block_products(xb, wb, chain, W_PARTS, UPCAST)
            total += chain  # promotion: one IEEE fp32 addition per chain
        tl.store(out + rows[:, None] * o_m + cols[None, :] * o_n, total, mask=in_rows & in_cols)


def linear(x: Tensor, weight: Tensor, bf16_values: bool = False) -> Tensor:
    """x @ weightᵀ to fp32 accuracy in one kernel, from bf16 parts split in registers.

    x: (..., K) fp32; weight: (N, K) bf16, fp16 or fp32, any strides (`W.t()` gives δ·W).
    bf16_values: an fp32 weight holds bf16 values (a sharded bf16 model gathers them in fp32):
    one exact part, cast in registers, so no bf16 copy is made. Returns fp32 (..., N).
    """
    if kernels.triton is None:
        raise RuntimeError("the fused linear kernel needs triton (pip install triton)")
    if x.dtype != torch.float32:
        raise ValueError(f"the fused linear kernel takes float32 inputs (the engine's fp32 compute); got {x.dtype}")
    k = x.shape[-1]
    if weight.dim() != 2 or weight.shape[1] != k:
        raise ValueError(f"shapes do not match: x {tuple(x.shape)} and weight {tuple(weight.shape)} (N, {k})")
    flat = x.reshape(-1, k)
    m, n = flat.shape[0], weight.shape[0]
    if weight.dtype not in WEIGHT_DTYPES:
        raise ValueError(f"the fused linear kernel takes weights in {sorted(map(str, WEIGHT_DTYPES))}; got {weight.dtype}")
    if m * n >= 2**31 or not kernels.int32_offsets(flat, weight):
        raise ValueError(f"the fused linear kernel indexes in int32: {m} × {k} inputs and a {n} × {k} weight reach beyond; use fused_linear false")
    out = torch.empty(m, n, dtype=torch.float32, device=x.device)
    w_parts = 1 if weight.dtype == torch.bfloat16 or bf16_values else 3
    chain = kernel_chain(k, len(pairs(3, w_parts)))
    grid = (triton.cdiv(m, BLOCK_M) * triton.cdiv(n, BLOCK_N),)
    descriptors = tma_descriptors(flat, weight)
    x_arg, w_arg, w_kn = (flat, weight, False) if descriptors is None else descriptors
    _linear[grid](
        x_arg, w_arg, out, m, n, k, chain, *flat.stride(), *weight.stride(), *out.stride(),
        W_PARTS=w_parts, UPCAST=kernels.interpreted(), TMA=descriptors is not None, W_KN=w_kn,
        BM=BLOCK_M, BN=BLOCK_N, BK=BLOCK_K, GROUP=GROUP_M, num_warps=NUM_WARPS, num_stages=NUM_STAGES,
        enable_fp_fusion=kernels.FP_FUSION,
    )  # fmt: skip
    return out.reshape(*x.shape[:-1], n)


def tma_descriptors(x: Tensor, weight: Tensor) -> tuple[object, object, bool] | None:
    """(x's descriptor, W's descriptor, whether W is laid (k, n)) where TMA can read both, else None
    (kernels.descriptor says when). W (n, k) is read as stored when k is its contiguous dimension; a
    transposed view (the backward's Wᵀ, GPT-2's Conv1D) is read in its storage layout (k, n)."""
    if not kernels.tma_device(x.device):
        return None
    w_kn = weight.stride(1) != 1
    w_desc = kernels.descriptor(weight.t(), [BLOCK_K, BLOCK_N]) if w_kn else kernels.descriptor(weight, [BLOCK_N, BLOCK_K])
    x_desc = kernels.descriptor(x, [BLOCK_M, BLOCK_K])
    return None if x_desc is None or w_desc is None else (x_desc, w_desc, w_kn)
