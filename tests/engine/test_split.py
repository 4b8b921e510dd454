"""Split-precision algebra (engine/split.py) against fp64, on the CPU.

A tensor core multiplies bf16 values exactly and adds in fp32; on a CPU the same part products are
formed from the upcast parts, so the accuracy shown here is the method's, not a GPU's. The GPU's
own check is benchmarks/gpu.py.
"""

from __future__ import annotations

import pytest
import torch

from lit_activation.engine.split import PARTS, concat_left, concat_right, pairs, split_bf16, split_linear, split_matmul

U = 2.0**-24  # unit roundoff of fp32


def wide_range(*shape: int, seed: int = 0) -> torch.Tensor:
    """fp32 values over ±30 binary orders of magnitude (the parts must follow each value's own scale)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * torch.exp2(torch.randint(-30, 30, shape, generator=g).float())


def test_three_bf16_parts_sum_back_exactly():
    x = wide_range(400, 300)
    parts = split_bf16(x)
    assert len(parts) == PARTS and all(p.dtype == torch.bfloat16 for p in parts)
    # fp64 holds every partial sum exactly: the parts are an exact decomposition of x
    assert torch.equal(sum(p.double() for p in parts), x.double())
    # each part is at most half an ulp (bf16: 2^-8 relative) of the remainder before it
    assert bool((parts[1].double().abs() <= x.double().abs() * 2.0**-8).all())
    assert bool((parts[2].double().abs() <= x.double().abs() * 2.0**-16).all())


def test_two_parts_are_not_enough():
    """The precondition of the method: 16 of fp32's 24 bits lose information, 24 do not."""
    x = wide_range(200, 100, seed=1)
    two = sum(p.double() for p in split_bf16(x, parts=2))
    assert not torch.equal(two, x.double())


def test_a_bf16_tensor_is_its_own_part():
    w = torch.randn(5, 7).bfloat16()
    (part,) = split_bf16(w)
    assert part is w


def test_kept_part_products_are_those_above_fp32_rounding():
    # smallest first (order i + j = 2, then 1, then 0): the accumulator stays small while they are added
    assert pairs(3, 3) == [(0, 2), (1, 1), (2, 0), (0, 1), (1, 0), (0, 0)]
    assert pairs(3, 1) == [(2, 0), (1, 0), (0, 0)]  # a bf16 weight: one part
    a, b = [torch.full((1, 2), float(i)) for i in range(3)], [torch.full((2, 1), float(10 * j)) for j in range(3)]
    left, right = concat_left(a, 3), concat_right(b, 3)
    # the k-th column block of the left meets the k-th row block of the right: (i, j) in order
    assert left[0, ::2].tolist() == [0, 1, 2, 0, 1, 0]
    assert right[::2, 0].tolist() == [20, 10, 0, 10, 0, 0]


def bound(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a|·|b| in fp64: the scale every error below is measured against (elementwise)."""
    return a.double().abs() @ b.double().abs()


@pytest.mark.parametrize("k", [16, 512, 4096])
def test_split_product_is_as_accurate_as_fp32(k):
    """Error of the six part products against fp64 is within fp32's own bound (k·u·|a||b|) and
    within a small factor of what plain fp32 gets on the same operands."""
    a, b = wide_range(24, k, seed=2), wide_range(k, 40, seed=3)
    exact = a.double() @ b.double()
    scale = bound(a, b)
    split_error = float(((split_matmul(a, b).double() - exact).abs() / scale).max())
    fp32_error = float((((a @ b).double() - exact).abs() / scale).max())
    bf16_error = float((((a.bfloat16().float() @ b.bfloat16().float()).double() - exact).abs() / scale).max())
    assert split_error <= 3 * k * U  # the kept products are exact; 6k fp32 additions; dropped terms ≤ 3u
    assert split_error <= 4 * max(fp32_error, U)
    assert bf16_error > 100 * split_error  # a single bf16 pass is far worse: the test can tell


def test_batched_split_product_per_sample():
    """G_s = δ_sᵀ x_s for every sample at once (bmm), as the engine forms per-sample gradients."""
    delta, x = wide_range(3, 20, 64, seed=4), wide_range(3, 64, 30, seed=5)
    exact = delta.double() @ x.double()
    error = ((split_matmul(delta, x).double() - exact).abs() / (delta.double().abs() @ x.double().abs())).max()
    assert float(error) <= 3 * 64 * U


@pytest.mark.parametrize("weight_dtype", [torch.bfloat16, torch.float32])
def test_split_linear_matches_fp64(weight_dtype):
    """x·Wᵀ with W as stored: one exact part for bf16, three for fp32."""
    x = wide_range(2, 5, 256, seed=6)
    w = (torch.randn(48, 256, generator=torch.Generator().manual_seed(7))).to(weight_dtype)
    exact = x.double() @ w.double().t()
    scale = x.double().abs() @ w.double().abs().t()
    got = split_linear(x, w)
    assert got.shape == (2, 5, 48) and got.dtype == torch.float32
    assert float(((got.double() - exact).abs() / scale).max()) <= 3 * 256 * U
