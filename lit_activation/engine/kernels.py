"""One fused Triton kernel for Finding 1's reduction |W| ⊙ Σ_s |δ_sᵀ x_s|, tile by tile.

Each program keeps a block of one sample's product in registers and adds its absolute value to the
batch sum, so the per-sample products never go through memory; the result is the plain path's up to
the order of fp32 additions. CUDA with triton (`EngineSettings.fused`); TRITON_INTERPRET=1, set
before triton is imported, runs it on a CPU (docs/design.md, "The fused kernels").
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from lit_activation.engine.split import chain_bounds

try:  # a CUDA torch ships triton; the CPU wheel does not
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
try:  # host-side tensor descriptors (TMA): triton >= 3.4
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover - depends on the installation
    TensorDescriptor = None

# A tile that compiles for sm_90 without spilling in every mode (benchmarks/compile_check.py: 114-154
# registers through TMA, 233 through pointers; 128 × 128 spills when chained); the GPU sweep
# (benchmarks/gpu.py) times 128 × 128 too.
BLOCK_R, BLOCK_C, BLOCK_K = 64, 128, 32
NUM_WARPS, NUM_STAGES = 8, 3
# Programs run in groups of GROUP_R row blocks, column block by column block, so that a group's
# operand rows stay in L2 while the columns stream past (a plain row-major order rereads them all
# from HBM once per column block). 1 is row-major.
GROUP_R = 8
# Blocks arrive through TMA tensor descriptors where the device (Hopper or later) and the operands'
# layout allow: the copy engine fetches a block per request and reads zeros beyond the tensor, so
# the per-element addresses and bounds masks that pointer loads hold in registers are gone (60-80
# of ~250 per thread, benchmarks/compile_check.py). False: always pointers.
TMA = True
# Pinned rather than left to Triton's default, which 3.10 turns off: both kernels were compiled and
# checked with multiplies and adds fused (benchmarks/compile_check.py), and pinning it keeps the
# compiled code the one checked whatever the installed Triton's default. Their fp32 arithmetic outside
# tl.dot (the split's subtractions, the |acc| sums, the final × |W|) has no add fed by a multiply.
FP_FUSION = True


def available(device: torch.device) -> bool:
    """Whether the kernel runs on `device`: CUDA with triton, or any device under TRITON_INTERPRET=1."""
    if triton is None:
        return False
    return device.type == "cuda" or interpreted()


def check_fused(device: torch.device, option: str = "fused") -> bool:
    """True when the engine's Triton kernels run on `device`; else one line naming the option
    (`engine.<option>`) and what is missing (ValueError)."""
    if triton is None:
        raise ValueError(f"engine.{option}: true needs triton (a CUDA build of torch ships it); accepted on this machine: false")
    if not available(device):
        raise ValueError(f"engine.{option}: true runs on CUDA (or under TRITON_INTERPRET=1), not on {device.type}; accepted here: false")
    return True


def int32_offsets(*tensors: Tensor) -> bool:
    """Whether every element of each tensor (views too: strides count) lies within an int32 offset,
    as the kernels compute their addresses."""
    return all(sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True)) < 2**31 for t in tensors)


def tma_device(device: torch.device) -> bool:
    """Whether blocks may come through TMA descriptors on `device`: Hopper or later, or the interpreter."""
    if not TMA or TensorDescriptor is None:
        return False
    return interpreted() or (device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9)


def descriptor(t: Tensor, block: list[int]) -> object | None:
    """A TMA descriptor of `t` in blocks of `block`, or None where TMA cannot read it: an empty or
    broadcast (stride 0) tensor; else the last dimension must be contiguous, the base address and
    every other stride 16-byte aligned."""
    size = t.element_size()
    if t.numel() == 0 or any(stride <= 0 for stride in t.stride()):
        return None
    if t.stride(-1) != 1 or t.data_ptr() % 16 or any(stride * size % 16 for stride in t.stride()[:-1]):
        return None
    return TensorDescriptor(t, list(t.shape), list(t.stride()), block)


def interpreted() -> bool:
    # Triton's CPU interpreter (3.9) multiplies bf16 operands of tl.dot as raw bit patterns; there
    # the parts are upcast first, which changes nothing: a product of two bf16 values is exact in fp32.
    return os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def program_block(n_rows, n_cols, BR: tl.constexpr, BC: tl.constexpr, GROUP: tl.constexpr):  # noqa: N803
        """The first output row and column of this program's block: GROUP row blocks at a time,
        column block by column block."""
        row_blocks, col_blocks = tl.cdiv(n_rows, BR), tl.cdiv(n_cols, BC)
        pid, per_group = tl.program_id(0), GROUP * col_blocks
        first = (pid // per_group) * GROUP  # the group's first row block
        height = tl.minimum(row_blocks - first, GROUP)  # the last group may be shorter
        return (first + (pid % per_group) % height) * BR, ((pid % per_group) // height) * BC

    @triton.jit
    def _span_sum(
        a, b, acc, s, start, stop, row0, col0, rows, cols, in_rows, in_cols, a_s, a_r, a_k, b_s, b_k, b_c,
        IEEE: tl.constexpr, UPCAST: tl.constexpr, TMA: tl.constexpr, CHAINED: tl.constexpr,  # noqa: N803
        BR: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,  # noqa: N803
    ):  # fmt: skip
        """acc + a_s[rows, start:stop] @ b_s[start:stop, cols]: blocks of BK, masked at `stop`, so a
        block that straddles a chain's end is summed in that chain only up to it. TMA: a and b are
        tensor descriptors, reading zeros beyond the tensor; their blocks must start 16-byte aligned
        along K, so they keep to multiples of BK and a chain's ends inside a block are masked."""
        ks = tl.arange(0, BK)
        if TMA:
            lo = start // BK * BK
        else:
            lo = start
        for k0 in range(lo, stop, BK):
            kk = k0 + ks
            if TMA:
                left = a.load([s, row0, k0]).reshape(BR, BK)
                right = b.load([s, k0, col0]).reshape(BK, BC)
                if CHAINED:
                    inside = (kk >= start) & (kk < stop)
                    left = tl.where(inside[None, :], left, 0.0)
                    right = tl.where(inside[:, None], right, 0.0)
            else:
                left = tl.load(a + s * a_s + rows[:, None] * a_r + kk[None, :] * a_k, mask=in_rows & (kk[None, :] < stop), other=0.0)
                right = tl.load(b + s * b_s + kk[:, None] * b_k + cols[None, :] * b_c, mask=(kk[:, None] < stop) & in_cols, other=0.0)
            if UPCAST:  # the same exact products in fp32 (see `interpreted`)
                left, right = left.to(tl.float32), right.to(tl.float32)
            if IEEE or UPCAST:  # fp32 operands: IEEE fp32 products, never TF32
                acc = tl.dot(left, right, acc, input_precision="ieee")
            else:  # bf16 parts: exact products, fp32 sums
                acc = tl.dot(left, right, acc)
        return acc

    @triton.jit
    def _weighted_abs_sum(
        a, b, w, out, batch, n_rows, n_cols, k, first, step,
        a_s, a_r, a_k, b_s, b_k, b_c, w_r, w_c, o_r, o_c,
        IEEE: tl.constexpr, UPCAST: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, GROUP: tl.constexpr,  # noqa: N803
        CHAINED: tl.constexpr,  # noqa: N803 - whether K goes beyond the first chain; without, one accumulator fewer
        TMA: tl.constexpr,  # noqa: N803 - a and b are tensor descriptors (else pointers)
    ):  # fmt: skip
        row0, col0 = program_block(n_rows, n_cols, BR, BC, GROUP)
        rows, cols = row0 + tl.arange(0, BR), col0 + tl.arange(0, BC)
        in_rows, in_cols = rows[:, None] < n_rows, cols[None, :] < n_cols
        total = tl.zeros((BR, BC), dtype=tl.float32)
        for s in range(0, batch):
            zero = tl.zeros((BR, BC), dtype=tl.float32)
            acc = _span_sum(
                a, b, zero, s, 0, first, row0, col0, rows, cols, in_rows, in_cols, a_s, a_r, a_k, b_s, b_k, b_c, IEEE, UPCAST, TMA, CHAINED, BR, BC, BK
            )
            if CHAINED:  # each further chain from zero, added in fp32
                for c0 in range(first, k, step):
                    stop = tl.minimum(c0 + step, k)
                    acc += _span_sum(
                        a, b, zero, s, c0, stop, row0, col0, rows, cols, in_rows, in_cols, a_s, a_r, a_k, b_s, b_k, b_c, IEEE, UPCAST, TMA, CHAINED, BR, BC, BK
                    )
            total += tl.abs(acc)
        weight = tl.load(w + rows[:, None] * w_r + cols[None, :] * w_c, mask=in_rows & in_cols, other=0.0)
        tl.store(out + rows[:, None] * o_r + cols[None, :] * o_c, total * weight, mask=in_rows & in_cols)


def weighted_abs_sum(left: Tensor, right: Tensor, abs_weight: Tensor, out: Tensor, positions: int | None = None) -> Tensor:
    """out = |W| ⊙ Σ_s |left_s @ right_s|, without forming the (batch, rows, cols) products.

    left: (batch, rows, K), right: (batch, K, cols), both fp32 or both bf16 (parts along K);
    abs_weight and out: (rows, cols) fp32 on the same device. positions: how much of K, at its
    end, holds full-scale products, summed in chains as the plain path sums them (split.chain_step;
    default: all of K). fp32 operands are summed in one chain (CUDA cores round to nearest). Returns out.
    """
    if triton is None:
        raise RuntimeError("the fused kernel needs triton (pip install triton)")
    if left.dtype != right.dtype or left.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"operands must both be float32 or both bfloat16; got {left.dtype} and {right.dtype}")
    batch, n_rows, k = left.shape
    n_cols = right.shape[-1]
    if right.shape[:2] != (batch, k) or abs_weight.shape != (n_rows, n_cols) or out.shape != (n_rows, n_cols):
        raise ValueError(f"shapes do not match: left {tuple(left.shape)}, right {tuple(right.shape)}, weight {tuple(abs_weight.shape)}, out {tuple(out.shape)}")
    if not int32_offsets(left, right, abs_weight, out):
        shapes = f"{tuple(left.shape)} and {tuple(right.shape)}"
        raise ValueError(f"the fused kernel indexes in int32: operands {shapes} reach beyond; use fused false or a smaller tile_mb")
    full = k if positions is None else positions
    if not 0 < full <= k:
        raise ValueError(f"positions must be in 1..{k} (the full-scale span of K); got {positions}")
    ieee = left.dtype == torch.float32  # CUDA cores round to nearest: one chain
    first, step = (k, k) if ieee else chain_bounds(k, full)  # the first chain takes the small part products too
    grid = (triton.cdiv(n_rows, BLOCK_R) * triton.cdiv(n_cols, BLOCK_C),)
    descriptors = operand_descriptors(left, right)
    a, b = (left, right) if descriptors is None else descriptors
    _weighted_abs_sum[grid](
        a, b, abs_weight, out, batch, n_rows, n_cols, k, first, step,
        *left.stride(), *right.stride(), *abs_weight.stride(), *out.stride(),
        IEEE=ieee, UPCAST=interpreted(), BR=BLOCK_R, BC=BLOCK_C, BK=BLOCK_K, GROUP=GROUP_R, CHAINED=first < k,
        TMA=descriptors is not None, num_warps=NUM_WARPS, num_stages=NUM_STAGES, enable_fp_fusion=FP_FUSION,
    )  # fmt: skip
    return out


def operand_descriptors(left: Tensor, right: Tensor) -> tuple[object, object] | None:
    """TMA descriptors of the per-sample operands (one sample's block each), or None where the
    device or their layout (a tile's row slice included) does not allow them, or where they are
    fp32: IEEE products from TMA-loaded blocks spill registers at every launch compile_check tried."""
    if left.dtype == torch.float32 or not tma_device(left.device):
        return None
    a, b = descriptor(left, [1, BLOCK_R, BLOCK_K]), descriptor(right, [1, BLOCK_K, BLOCK_C])
    return None if a is None or b is None else (a, b)
