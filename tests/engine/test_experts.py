"""Mixture-of-experts scores: every expert's slices, the routers and shared experts, exact against an fp64
per-sample autograd loop, whatever the experts' kernel (docs/moe.md)."""

from __future__ import annotations

import pytest
import torch

from lit_activation.engine import EngineSettings, stream_taylor_scores, taylor_scores
from lit_activation.models.tiny import MOE_ARCHITECTURES, tiny_model
from tests.helpers.engine import padded_batch
from tests.helpers.naive import naive_unit_scores

# The engine in float64 against fp64 autograd: exact mathematics, up to the fp32 rounding of the scores
# it hands over (6e-8 per value). Measured: at most 1e-7 for every family.
EXACT = 1e-6
# The engine in fp32 against fp64 autograd, relative to each unit's largest score. These tiny random
# models are ill-conditioned where a router's softmax backward cancels: plain fp32 autograd on the same
# sample is itself off by up to 2.0e-5 there (a Mixtral router), the engine by up to 1.7e-5; elsewhere
# both stay under 1e-5 (tables in docs/performance.md). Wrong mathematics is off by orders of magnitude more.
FP32 = 4e-5


def max_normalised(got: torch.Tensor, exact: torch.Tensor) -> float:
    return float((got.double() - exact).abs().max() / exact.abs().max())


def assert_exact(model, ids, mask, tolerances: dict[float, dict[str, torch.Tensor]], target: str = "max_logit") -> None:
    """Each sample's scores (for each tolerance, a result of the engine) against fp64 autograd on the
    sample alone; an expert none of the sample's tokens reached scores exactly zero."""
    for r in range(ids.shape[0]):
        exact = naive_unit_scores(model, ids[r][mask[r].bool()], target)
        for tolerance, batched in tolerances.items():
            assert batched.keys() == exact.keys()
            for name, e in exact.items():
                got = batched[name][r]
                assert got.dtype == torch.float32 and got.shape == e.shape, name
                if not e.any():
                    assert not got.any(), f"{name}: sample {r} routed nothing here, yet scores {float(got.abs().max())}"
                    continue
                error = max_normalised(got, e)
                assert error <= tolerance, f"{name}, sample {r}: max-normalised error {error:.2e} > {tolerance:g}"


FP64 = EngineSettings(compute_dtype="float64")


@pytest.fixture(scope="module", params=MOE_ARCHITECTURES)
def moe(request):
    return tiny_model(request.param)


def test_every_family_equals_fp64(moe):
    """Mixtral, Qwen2-MoE (shared expert and its gate), Qwen3-MoE, OLMoE, gpt-oss (transposed, interleaved,
    biased, clamped) and DeepSeek-V3 (group-limited routing, shared experts, a dense first layer), on a
    right-padded batch."""
    ids, mask = padded_batch("right")
    assert_exact(moe, ids, mask, {EXACT: taylor_scores(moe, ids, mask, FP64), FP32: taylor_scores(moe, ids, mask)})


def test_left_padding_and_block_recomputation_equal_fp64():
    model = tiny_model("mixtral")
    ids, mask = padded_batch("left")
    assert_exact(model, ids, mask, {FP32: taylor_scores(model, ids, mask)})
    # float64 on right padding: transformers' fp64 attention masks turn a left pad's row into NaN
    ids, mask = padded_batch("right")
    assert_exact(model, ids, mask, {EXACT: taylor_scores(model, ids, mask, EngineSettings(compute_dtype="float64", checkpoint_blocks=True))})


@pytest.mark.parametrize("arch", ["mixtral", "gpt_oss"])
def test_scores_do_not_depend_on_the_experts_kernel(arch):
    """The same scores under every experts implementation transformers offers on a CPU; the model's own
    setting and forward are back after the pass."""
    model = tiny_model(arch)
    ids, mask = padded_batch("right")
    results = {}
    for kernel in ("eager", "batched_mm", "grouped_mm"):
        model.config._experts_implementation = kernel
        results[kernel] = taylor_scores(model, ids, mask)
        assert model.config._experts_implementation == kernel
        assert not any("forward" in vars(m) for m in model.modules())
    for kernel in ("batched_mm", "grouped_mm"):
        for name, value in results["eager"].items():
            assert torch.equal(results[kernel][name], value), (kernel, name)


def routed_samples(model, ids, mask) -> dict[tuple[int, int], set[int]]:
    """(layer, expert) -> the samples with a real token routed there, read off the routers' own outputs."""
    from lit_activation.models.experts import is_router

    seen: dict[tuple[int, int], set[int]] = {}
    handles = []
    for layer, block in enumerate(model.model.layers):
        for router in (m for m in block.modules() if is_router(m)):
            def hook(module, args, output, layer=layer):
                chosen = output[2].reshape(ids.shape[0], ids.shape[1], -1)  # (logits, weights, indices)
                for s, t in mask.nonzero().tolist():
                    for e in chosen[s, t].tolist():
                        seen.setdefault((layer, e), set()).add(s)
            handles.append(router.register_forward_hook(hook))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    return seen


def test_an_expert_costs_only_its_routed_samples():
    """Each expert's tiles hold exactly the samples that routed a real token to it; an expert no real
    token reached yields no tile at all (no product formed), and none counts a pad."""
    model = tiny_model("qwen3_moe", layers=3)
    ids, mask = padded_batch("right")
    expected = routed_samples(model, ids, mask)
    got: dict[tuple[int, int], set[int]] = {}

    def consumer(tile):
        parts = tile.name.split(".")
        if "experts" in parts:
            layer, expert = int(parts[2]), int(parts[parts.index("experts") + 1])
            held = range(ids.shape[0]) if tile.samples is None else tile.samples.tolist()
            assert tile.abs_grad.shape[0] == len(held)
            got.setdefault((layer, expert), set()).update(held)

    stream_taylor_scores(model, ids, mask, consumer)
    assert got == expected
    experts = model.config.num_experts
    assert len(expected) < experts * 3 or any(len(v) < ids.shape[0] for v in expected.values()), "the batch routes everything everywhere"


def test_bf16_stored_experts_give_exact_fp32_scores():
    """Experts stored in bf16: fp32 scores of the bf16-rounded weights, each expert's slice upcast on its
    own (the fused tensors stay bf16 throughout the pass)."""
    stored = tiny_model("gpt_oss").to(torch.bfloat16)
    twin = tiny_model("gpt_oss").to(torch.bfloat16).float()
    ids, mask = padded_batch("right")
    dtypes = set()
    fused = [p for n, p in stored.named_parameters() if p.dim() == 3]
    small_tiles = EngineSettings(tile_mb=4096 / 2**20)
    results = {FP32: taylor_scores(stored, ids, mask, small_tiles), EXACT: taylor_scores(stored, ids, mask, FP64)}
    stream_taylor_scores(stored, ids, mask, lambda tile: dtypes.update(p.dtype for p in fused), small_tiles)
    assert dtypes == {torch.bfloat16}
    assert {p.dtype for p in stored.parameters()} == {torch.bfloat16}
    assert_exact(twin, ids, mask, results)


def test_llmdcos_of_a_mixture_of_experts_equals_fp64():
    """LLMDcos per layer, every unit of the layer concatenated (experts included): the Gram of the
    expert tiles that hold only some of the batch's rows lands on the right pairs."""
    from lit_activation.analyses.similarity import llmdcos
    from lit_activation.models.layers import layer_map

    model = tiny_model("qwen3_moe", layers=3)
    g = torch.Generator().manual_seed(2)
    rows = {side: [torch.randint(4, 100, (n,), generator=g) for n in lengths] for side, lengths in (("a", (3, 7, 5)), ("b", (6, 2, 9)))}

    def batch(side):
        ids = torch.zeros((3, 9), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows[side]):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        return {"input_ids": ids, "attention_mask": mask}

    got = llmdcos(model, batch("a"), batch("b"), FP64)
    layer_of, _, n_layers = layer_map(model)
    for i in range(3):
        a, b = naive_unit_scores(model, rows["a"][i]), naive_unit_scores(model, rows["b"][i])
        for layer in range(n_layers):
            va = torch.cat([a[n].flatten() for n in a if layer_of[n] == layer])
            vb = torch.cat([b[n].flatten() for n in b if layer_of[n] == layer])
            expected = float(va @ vb / (va.norm() * vb.norm()))
            assert abs(float(got[i, layer]) - expected) <= 1e-6, (i, layer)


class OpaqueExperts(torch.nn.Module):
    """Experts the engine cannot read: a fused 3D tensor without transformers' layout flags."""

    def __init__(self, experts: torch.nn.Module) -> None:
        super().__init__()
        self.weights = torch.nn.Parameter(experts.gate_up_proj.detach().clone())

    def forward(self, hidden, top_k_index, top_k_weights):
        return hidden


def test_experts_of_an_unknown_layout_are_refused_naming_them():
    from lit_activation.models.layers import scored_modules

    model = tiny_model("mixtral")
    model.model.layers[1].mlp.experts = OpaqueExperts(model.model.layers[1].mlp.experts)
    with pytest.raises(ValueError, match=r"MixtralForCausalLM cannot be scored: its MixtralDecoderLayer holds mlp\.experts\.weights, "):
        scored_modules(model)
    with pytest.raises(ValueError, match="cannot be scored"):
        taylor_scores(model, *padded_batch("right"))
