"""Split products under a model of how a tensor core adds (engine/tensor_core.py), on the CPU.

The model's semantics are pinned first by hand-computed cases (truncation in alignment and in the
accumulator, against IEEE rounding to nearest). Then the split layout is run through it with the
engine's own code (only the bf16 GEMM is replaced by the model) and its error against fp64 is held
to at most twice that of a CUDA-core fp32 GEMM on the same operands, issue 16's accuracy bar; the
tests also show the layouts without the order or the chains missing that bar, so they can tell.
"""

from __future__ import annotations

import pytest
import torch

import lit_activation.engine.split as split
from lit_activation.engine.products import SplitProducts
from lit_activation.engine.split import ALIGN, chain_length, chain_step, chained_matmul, in_epilogue
from lit_activation.engine.tensor_core import cuda_core_matmul, tensor_core_bf16_matmul, tensor_core_matmul, truncate_to_fp32
from tests.helpers.engine import max_error, median_error

ULP1 = 2.0**-23  # fp32's spacing just above 1


def test_truncation_to_fp32_goes_toward_zero():
    x = torch.tensor([1 + 1.5 * 2.0**-24, -(1 + 1.5 * 2.0**-24), 1 + 0.99 * ULP1, 3.0, -0.0], dtype=torch.float64)
    assert truncate_to_fp32(x).tolist() == [1.0, -1.0, 1.0, 3.0, -0.0]
    assert x.float().tolist()[:3] == [1 + ULP1, -(1 + ULP1), 1 + ULP1]  # where rounding to nearest goes up


def test_a_step_cuts_addends_below_its_alignment_width():
    """One step of 16 products: fifteen of 2⁻²⁶, then 1·1. Aligned at 2⁰ with 25 fraction bits,
    each 2⁻²⁶ is cut to 0, so the step returns exactly 1. Fused multiply-adds in this order sum the
    small ones exactly first and round 1 + 15·2⁻²⁶ to nearest: 1 + 2 ulp."""
    a = torch.tensor([[2.0**-13] * 15 + [1.0]])
    b = a.t().clone()
    assert tensor_core_matmul(a, b).item() == 1.0
    assert cuda_core_matmul(a, b).item() == 1 + 2 * ULP1


def test_a_chain_truncates_the_accumulator_at_every_step():
    """Steps that each add 0.75 ulp to an accumulator of 1 are all lost (toward zero), where
    rounding to nearest adds a whole ulp each time: 1 + 4 ulp after four steps."""
    a = torch.zeros(1, 80)
    b = torch.zeros(80, 1)
    a[0, 0], b[0, 0] = 1.0, 1.0
    for step in range(1, 5):  # the first product of steps 2-5: 1.5·2⁻²⁴ = 0.75 ulp of 1 (both bf16)
        a[0, 16 * step], b[16 * step, 0] = 1.5 * 2.0**-12, 2.0**-12
    assert tensor_core_matmul(a, b).item() == 1.0
    assert cuda_core_matmul(a, b).item() == 1 + 4 * ULP1


def one_step(products: list[tuple[float, float]], c: float = 0.0) -> float:
    """One modelled step: the given (a, b) factor pairs (≤ 16), after an accumulator holding `c`.

    `c` enters as a first step of its own (1·c), so the case's step is the second one.
    """
    a, b = torch.zeros(1, 32), torch.zeros(32, 1)
    a[0, 0], b[0, 0] = 1.0, c
    for i, (x, y) in enumerate(products):
        a[0, 16 + i], b[16 + i, 0] = x, y
    return tensor_core_matmul(a, b).item()


def test_results_are_fp32_like_the_hardware_accumulator():
    """Everything downstream of a modelled GEMM must add in fp32, as on the GPU."""
    a, b = torch.randn(3, 40).bfloat16(), torch.randn(40, 2).bfloat16()
    assert tensor_core_matmul(a, b).dtype == torch.float32
    assert tensor_core_matmul(a[None], b[None]).dtype == torch.float32


def test_a_step_keeps_exactly_25_fraction_bits():
    """1·1 and four products of 2⁻²⁵ (= 2⁻¹³·2⁻¹²): each is one quantum at 25 bits, so they add up to
    2⁻²³, one ulp: 1 + 2⁻²³. With 24 bits each would be cut to 0."""
    assert one_step([(1.0, 1.0)] + [(2.0**-13, 2.0**-12)] * 4) == 1 + ULP1


def test_negative_addends_are_cut_toward_zero():
    """1·1 and fifteen products of −2⁻²⁶: each is cut to 0 (toward zero), not to −2⁻²⁵: exactly 1."""
    assert one_step([(1.0, 1.0)] + [(-(2.0**-13), 2.0**-13)] * 15) == 1.0


def test_a_product_aligns_with_the_sum_of_its_factors_exponents():
    """1.5·1.5 = 2.25 aligns at 2⁰ (0 + 0), not at 2¹: eight products of 2⁻²⁵ are kept and add 2⁻²²."""
    assert one_step([(1.5, 1.5)] + [(2.0**-13, 2.0**-12)] * 8) == 2.25 + 2.0**-22


def test_the_accumulator_is_cut_when_a_larger_product_sets_the_scale():
    """C = 1 + 2⁻²³ with products 8 and −8: the step aligns at 2³, its quantum is 2⁻²², so C's last
    bit is cut and the result is exactly 1, though the exact sum 1 + 2⁻²³ is an fp32 value. A C of
    1 + 2⁻²² is a whole number of quanta and survives."""
    assert one_step([(8.0, 1.0), (-8.0, 1.0)], c=1 + ULP1) == 1.0
    assert one_step([(8.0, 1.0), (-8.0, 1.0)], c=1 + 2 * ULP1) == 1 + 2 * ULP1


def test_overflow_is_infinite_and_stays():
    """A step beyond fp32's range gives inf (not FLT_MAX), and a later step cannot pull it back."""
    big = 1.5 * 2.0**127  # bf16-representable
    a = torch.tensor([[big] + [0.0] * 15 + [-big] + [0.0] * 15])
    b = torch.tensor([[2.0]] + [[0.0]] * 15 + [[2.0]] + [[0.0]] * 15)
    assert tensor_core_matmul(a[:, :16], b[:16]).item() == float("inf")
    assert tensor_core_matmul(a[:, :16], -b[:16]).item() == float("-inf")
    assert tensor_core_matmul(a, b).item() == float("inf")


@pytest.mark.parametrize("k, chain", [(64, 64), (128, 128), (129, 128), (576, 256), (4095, 512), (4096, 1024), (11008, 1024), (16383, 1024), (16384, 2048)])
def test_chain_length_is_the_power_of_two_within_sixteen_root_k(k, chain):
    assert chain_length(k) == chain  # 16·√4096 = 1024 exactly; 16·√4095 just below it


def test_chains_off_and_the_floor(monkeypatch):
    monkeypatch.setattr(split, "CHAIN_SCALE", 0)
    assert chain_length(5000) == 5000
    monkeypatch.setattr(split, "CHAIN_SCALE", 1)
    assert chain_length(5000) == 128  # √5000 ≈ 71 is below MIN_CHAIN


@pytest.mark.parametrize("full, step", [(129, 129), (1024, 512), (1100, 640), (2048, 512), (4096, 1024), (11008, 1024)])
def test_chains_share_the_span_without_a_short_remainder(full, step):
    """129 = one chain (not 128 + 1); 1100 with chains of 512 = two of 640 (550 rounded up to ALIGN)."""
    assert chain_step(full) == step


def test_chain_steps_stay_near_the_rule_and_never_add_a_pass():
    for full in range(1, 20000, 37):
        step, rule = chain_step(full), chain_length(full)
        chains = -(-full // step)
        assert step <= full and step <= 1.5 * rule + ALIGN
        assert chains <= max(1, round(full / rule))
        assert chains == 1 or step % ALIGN == 0


def test_chained_matmul_splits_only_the_full_scale_span(monkeypatch):
    """K = 5·1024 small products then 1024 full-scale ones, chains of 512: the small ones and the
    first chain in one GEMM, the second chain accumulated; the result is the plain product's."""
    calls = []
    real = split.bf16_matmul

    def recording(a, b, out=None):
        calls.append(a.shape[-1])
        return real(a, b, out=out)

    monkeypatch.setattr(split, "bf16_matmul", recording)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 6 * 1024, generator=g).bfloat16(), torch.randn(6 * 1024, 2, generator=g).bfloat16()
    out = torch.full((3, 2), float("nan"))
    result = chained_matmul(a, b, full=1024, out=out)
    assert calls == [5 * 1024 + 512, 512]
    assert result.data_ptr() == out.data_ptr()
    exact = a.double() @ b.double()
    assert float(((result.double() - exact).abs() / (a.double().abs() @ b.double().abs())).max()) < 6 * 1024 * 2.0**-24
    with pytest.raises(ValueError, match="full must be in 1..6144"):
        chained_matmul(a, b, full=0)


def test_an_epilogue_add_this_torch_refuses_falls_back_once_with_a_warning(monkeypatch, caplog):
    """The CUDA path's policy, with stand-in ops: a refused form is tried once, logged once, then
    skipped (the caller adds in a second pass); an out-of-memory error is not a refusal."""
    monkeypatch.setattr(split, "_FUSED_ADD", {})
    tries = []

    def refused(*args, **kwargs):
        tries.append(kwargs)
        raise TypeError("unexpected keyword argument 'out_dtype'")

    total, a, b = torch.zeros(2, 2), torch.ones(2, 3), torch.ones(3, 2)
    with caplog.at_level("WARNING", logger="lit_activation.engine.split"):
        assert in_epilogue(refused, total, a, b) is None
        assert in_epilogue(refused, total, a, b) is None
    assert len(tries) == 1 and tries[0]["out"] is total and tries[0]["out_dtype"] == torch.float32
    assert sum("second pass" in r.message for r in caplog.records) == 1

    def fits(total, a, b, out_dtype, out):
        return out.add_(a @ b)

    assert in_epilogue(fits, total, a, b) is total and total.tolist() == [[3.0, 3.0], [3.0, 3.0]]

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        in_epilogue(out_of_memory, total, a, b)






def per_sample_gradient(delta: torch.Tensor, x: torch.Tensor, layout: str = "engine") -> torch.Tensor:
    """G_s = δ_s x_s as the split engine forms it; "largest first": the same parts in reverse along K."""
    products = SplitProducts()
    left, right = products.gradient_operands(delta, x)
    if layout == "largest first":
        t, blocks = x.shape[1], left.shape[-1] // x.shape[1]
        order = torch.cat([torch.arange(i * t, (i + 1) * t) for i in reversed(range(blocks))])
        return tensor_core_matmul(left[..., order], right[:, order])
    return products.gradient(left, right, torch.empty(delta.shape[0], delta.shape[1], x.shape[-1]), x.shape[1])


@pytest.mark.parametrize("positions", [128, 2048])
def test_per_sample_gradients_under_the_model_match_a_cuda_core_gemm(monkeypatch, positions):
    monkeypatch.setattr(split, "bf16_matmul", tensor_core_bf16_matmul)
    g = torch.Generator().manual_seed(positions)
    delta, x = torch.randn(2, 32, positions, generator=g), torch.randn(2, positions, 24, generator=g)
    exact = delta.double() @ x.double()
    ieee = cuda_core_matmul(delta, x)
    ours = per_sample_gradient(delta, x)
    assert median_error(ours, exact) <= 2 * median_error(ieee, exact)
    assert max_error(ours, exact) <= 2 * max_error(ieee, exact)
    # the previous layout (full-scale products first along K) misses the bar by far
    assert median_error(per_sample_gradient(delta, x, "largest first"), exact) > 4 * median_error(ieee, exact)
    if positions > split.chain_length(positions):  # long inputs: the chains matter too
        monkeypatch.setattr(split, "CHAIN_SCALE", 0)
        one_chain = per_sample_gradient(delta, x)
        assert median_error(one_chain, exact) > 2 * median_error(ieee, exact)
        assert median_error(ours, exact) < 0.5 * median_error(one_chain, exact)


def test_linear_products_under_the_model_match_a_cuda_core_gemm(monkeypatch):
    """x·Wᵀ at Llama-2-7B's hidden width from a bf16 weight: chains of 1024 keep it at a CUDA-core
    GEMM's accuracy; one chain over all 4096 is several times worse."""
    monkeypatch.setattr(split, "bf16_matmul", tensor_core_bf16_matmul)
    g = torch.Generator().manual_seed(1)
    x, weight = torch.randn(32, 4096, generator=g), (torch.randn(24, 4096, generator=g) * 0.02).bfloat16()
    exact = x.double() @ weight.double().t()
    ieee = cuda_core_matmul(x, weight.float().t())
    ours = split.split_linear(x, weight)
    assert median_error(ours, exact) <= 2 * median_error(ieee, exact)
    assert max_error(ours, exact) <= 2 * max_error(ieee, exact)
    monkeypatch.setattr(split, "CHAIN_SCALE", 0)
    assert median_error(split.split_linear(x, weight), exact) > 3 * median_error(ieee, exact)


def test_linear_from_fp32_weights_under_the_model(monkeypatch):
    """An fp32 weight has three parts too: six part products, the small five before the chains."""
    monkeypatch.setattr(split, "bf16_matmul", tensor_core_bf16_matmul)
    g = torch.Generator().manual_seed(2)
    x, weight = torch.randn(16, 2048, generator=g), torch.randn(20, 2048, generator=g) * 0.02
    exact = x.double() @ weight.double().t()
    ieee = cuda_core_matmul(x, weight.t())
    ours = split.split_linear(x, weight)
    assert median_error(ours, exact) <= 2 * median_error(ieee, exact)
    assert max_error(ours, exact) <= 2 * max_error(ieee, exact)
