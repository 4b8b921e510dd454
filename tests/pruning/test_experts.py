"""Removing whole experts: the scores against hand loops over tokens, the cut-down model against the original
with the removed experts' router logits at -inf, the saved model reloaded, and the refusals before any work."""

from __future__ import annotations

import copy
import json
import math
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from lit_activation import prune_model
from lit_activation.models.experts import experts_modules, routers
from lit_activation.models.layers import decoder_layers
from lit_activation.models.tiny import tiny_config, tiny_model, tiny_tokenizer
from lit_activation.pruning.context import Calibration
from lit_activation.pruning.experts import REAP, ExpertPruning, Frequency, MoEShape, TaylorMass, remove_experts, remove_scored_experts
from lit_activation.pruning.experts.layout import check_removal
from lit_activation.pruning.experts.removal import lowest_experts
from lit_activation.pruning.experts.routing import routed_statistics
from lit_activation.pruning.metrics import Taylor, Wanda

CALIBRATION = Calibration("news", samples=3, seqlen=16, batch_size=2)


def moe(arch: str, experts: int | None = None, seed: int = 0, dtype: torch.dtype = torch.float64, **changes: object) -> torch.nn.Module:
    """A tiny random mixture of experts (2 layers, hidden 32, top-2), as tiny_model makes it, with `experts`
    routed experts and other config changes; biases random too, so that slicing them is seen."""
    config = tiny_config(arch)
    if dtype == torch.float64:
        config._experts_implementation = "eager"  # the fused kernels take no float64
    for key, value in {**({"num_local_experts" if arch != "qwen2_moe" else "num_experts": experts} if experts else {}), **changes}.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 or name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return model.to(dtype).eval().requires_grad_(False)


def ids(samples: int = 3, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(4, 100, (samples, length), generator=torch.Generator().manual_seed(seed))


@contextmanager
def removed_logits_at_minus_inf(model: torch.nn.Module, removed: dict[int, list[int]]):
    """The original model with the removed experts' router logits at -inf: while a router runs (a pre-hook
    and a hook on it), F.linear adds -inf at those experts to the logits it computes; the router's own
    softmax / sigmoid, groups and top-k then run as the family wrote them."""
    _, blocks = decoder_layers(model)
    running: list[torch.Tensor] = []
    handles = []

    def done(module, args, output) -> None:
        running.pop()

    for layer, gone in removed.items():
        for router in routers(blocks[layer]).values():
            mask = torch.zeros(router.num_experts, dtype=torch.float64)
            mask[gone] = -math.inf
            handles.append(router.register_forward_pre_hook(lambda m, a, mask=mask: running.append(mask)))
            handles.append(router.register_forward_hook(done))
    linear = F.linear

    def masked(x, weight, bias=None):
        out = linear(x, weight, bias)
        return out + running[-1].to(out.dtype) if running else out

    torch.nn.functional.linear = masked
    try:
        yield
    finally:
        torch.nn.functional.linear = linear
        for handle in handles:
            handle.remove()


# (family, model options, experts removed per MoE layer): Qwen2-MoE's shared expert and its gate stay as
# they are; gpt-oss's router bias and expert biases go with their rows; DeepSeek-V3 (8 experts in 2 groups,
# its first layer dense) loses 2 of each group.
FAMILIES = [
    ("mixtral", {}, {0: [1, 3], 1: [0, 2]}),
    ("qwen2_moe", {}, {0: [0, 3], 1: [2, 1]}),
    ("gpt_oss", {}, {0: [2, 3], 1: [0, 1]}),
    ("deepseek_v3", {"n_routed_experts": 8}, {1: [0, 3, 5, 6]}),
]


@pytest.mark.parametrize(("arch", "options", "removed"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_the_cut_down_model_is_the_original_with_the_removed_experts_logits_at_minus_inf(arch, options, removed):
    model = moe(arch, **options)
    experts = MoEShape.of(model).experts
    with torch.no_grad(), removed_logits_at_minus_inf(model, removed):
        expected = model(ids()).logits
    shared = {n: p.clone() for n, p in model.named_parameters() if "shared_expert" in n}
    cut = copy.deepcopy(model)
    remove_experts(cut, removed)
    with torch.no_grad():
        torch.testing.assert_close(cut(ids()).logits, expected, rtol=1e-10, atol=1e-10)
        assert not torch.allclose(model(ids()).logits, expected, rtol=1e-4, atol=1e-4)  # the removal changes the output
    kept = experts - len(next(iter(removed.values())))
    assert MoEShape.of(cut).experts == kept and kept in [getattr(cut.config, k, None) for k in ("num_local_experts", "num_experts", "n_routed_experts")]
    _, before, _, after = *decoder_layers(model), *decoder_layers(cut)
    for layer, gone in removed.items():
        keep = [e for e in range(experts) if e not in gone]
        pairs = [*zip(experts_modules(before[layer]).values(), experts_modules(after[layer]).values(), strict=True)]
        pairs += [((a, None), (b, None)) for a, b in zip(routers(before[layer]).values(), routers(after[layer]).values(), strict=True)]
        for (a, _), (b, _) in pairs:  # every per-expert tensor: fused weights, biases, router rows, correction biases
            tensors = dict(a.named_parameters(recurse=False)) | dict(a.named_buffers(recurse=False))
            for name, tensor in tensors.items():
                if tensor.shape[0] == experts:
                    assert torch.equal(getattr(b, name), tensor[keep]), (layer, name)
    assert all(torch.equal(p, shared[n]) for n, p in cut.named_parameters() if "shared_expert" in n) and (shared or arch != "qwen2_moe")


@pytest.mark.parametrize(("arch", "options", "removed"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_the_cut_down_model_saves_and_reloads_with_the_new_expert_count(arch, options, removed, tmp_path):
    model = moe(arch, dtype=torch.float32, **options)
    experts = MoEShape.of(model).experts
    remove_experts(model, removed)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    kept = experts - len(next(iter(removed.values())))
    assert kept in [config.get(k) for k in ("num_local_experts", "num_experts", "n_routed_experts")]
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert MoEShape.of(reloaded).experts == kept
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids()).logits, model(ids()).logits, rtol=0, atol=0)


def moe_inputs(model: torch.nn.Module, batch: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each MoE block's input hidden states (tokens, hidden) on `batch`, from one plain forward of the model."""
    _, blocks = decoder_layers(model)
    seen, handles = {}, []
    for layer, block in enumerate(blocks):
        if experts_modules(block):
            handles.append(block.mlp.register_forward_pre_hook(lambda m, a, layer=layer: seen.__setitem__(layer, a[0].reshape(-1, a[0].shape[-1]))))
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    return seen


def naive_routing(model: torch.nn.Module, batch: torch.Tensor) -> tuple[dict, dict, dict]:
    """Token by token: the router's own (gate weights, experts), each chosen expert's output f_j(x) from the
    family's experts module given that one expert at gate weight 1; (Σ g·‖f‖, tokens routed, tokens) per layer."""
    _, blocks = decoder_layers(model)
    sums, routed, seen = {}, {}, {}
    for layer, hidden in moe_inputs(model, batch).items():
        (router,), ((experts, _),) = routers(blocks[layer]).values(), experts_modules(blocks[layer]).values()
        n = router.num_experts
        sums[layer], routed[layer], seen[layer] = [0.0] * n, [0] * n, hidden.shape[0]
        with torch.no_grad():
            for x in hidden:
                _, weights, chosen = router(x[None])
                for g, j in zip(weights[0].tolist(), chosen[0].tolist(), strict=True):
                    f = experts(x[None], torch.tensor([[j]]), torch.ones((1, 1), dtype=x.dtype))
                    sums[layer][j] += g * float(f.norm())
                    routed[layer][j] += 1
    return sums, routed, seen


@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe", "gpt_oss", "deepseek_v3"])
def test_reap_and_frequency_equal_a_hand_loop_over_tokens(arch):
    model = moe(arch, **({"n_routed_experts": 8} if arch == "deepseek_v3" else {}))
    batch = ids(3, 10)
    shape = MoEShape.of(model)
    stats = routed_statistics(model, batch, 2, list(shape.layers), shape.experts)
    sums, routed, seen = naive_routing(model, batch)
    reap, frequency = REAP().scores(shape, stats), Frequency().scores(shape, stats)
    rel = 1e-6 if arch == "deepseek_v3" else 1e-10  # DeepSeek-V3's router computes its gate weights in float32, whatever the model's dtype
    for row, layer in enumerate(shape.layers):
        assert stats.tokens[row].tolist() == routed[layer] and int(stats.tokens_seen[row]) == seen[layer] == batch.numel()
        expected = [s / t if t else 0.0 for s, t in zip(sums[layer], routed[layer], strict=True)]
        assert reap[row].tolist() == pytest.approx(expected, rel=rel, abs=1e-12)
        assert frequency[row].tolist() == pytest.approx([t / seen[layer] for t in routed[layer]], rel=1e-15)
        assert sum(routed[layer]) == shape.top_k * seen[layer]
    assert float(reap.sum()) > 0


def counts_json(tmp_path, model: str, layers: dict[str, dict[int, list[float]]], n_layers: int = 2, name: str = "counts.json") -> str:
    """A counts.json as a counts run of a mixture of experts writes it: per dataset, its layer counts and per MoE
    layer the experts' Taylor mass."""
    datasets = {
        name: {"n_samples": 4, "layer_counts": [100] * n_layers, "quantile_counts": {},
               "experts": {"num_experts": len(next(iter(mass.values()))), "layers": list(mass),
                           "per_layer": {str(k): {"taylor_mass": v} for k, v in mass.items()}}}
        for name, mass in layers.items()
    }
    path = tmp_path / name
    path.write_text(json.dumps({"model": model, "datasets": datasets}))
    return str(path)


MASS = {"code": {0: [0.5, 0.1, 0.1, 0.9], 1: [0.3, 0.2, 0.7, 0.0]}, "news": {0: [0.1, 0.5, 0.3, 0.9], 1: [0.1, 0.6, 0.2, 0.4]}}


def test_taylor_mass_is_read_from_one_dataset_or_averaged_over_all(tmp_path):
    shape = MoEShape((0, 1), experts=4, top_k=2)
    path = counts_json(tmp_path, "tiny-mixtral", MASS)
    code = TaylorMass(path, "code")
    code.check("tiny-mixtral", 2, shape)
    assert code.scores(shape, None).tolist() == [MASS["code"][0], MASS["code"][1]]
    mean = [[(a + b) / 2 for a, b in zip(MASS["code"][k], MASS["news"][k], strict=True)] for k in (0, 1)]
    averaged = TaylorMass(path).scores(shape, None).tolist()
    assert averaged[0] == pytest.approx(mean[0], rel=1e-15) and averaged[1] == pytest.approx(mean[1], rel=1e-15)


def test_the_lowest_scores_go_ties_to_the_lower_index_and_groups_lose_alike():
    assert lowest_experts([0.5, 0.1, 0.1, 0.9], 1) == [1]  # a tie: the lower index goes
    assert lowest_experts([0.5, 0.1, 0.1, 0.9], 2) == [1, 2]
    assert lowest_experts([0.2, 0.2, 0.2, 0.2], 3) == [0, 1, 2]
    assert lowest_experts([0.0, 0.1, 0.2, 0.3, 9.0, 8.0, 7.0, 6.0], 4, groups=2) == [0, 1, 6, 7]  # 2 from each group, not the 4 lowest
    assert lowest_experts([3.0, 1.0, 2.0], 0) == []


def test_domain_specific_removal_follows_the_datasets_mass_and_pruning_json_records_it(tmp_path):
    model = moe("mixtral", dtype=torch.float32)
    path = counts_json(tmp_path, "MixtralForCausalLM", MASS)
    record = prune_model(model, tiny_tokenizer(), 0.0, calibration=CALIBRATION, experts=ExpertPruning(0.5, TaylorMass(path, "code")))
    experts = record["experts"]
    assert record["method"] == "experts" and experts["ratio"] == 0.5
    assert experts["score"] == {"score": "taylormass", "path": path, "dataset": "code", "model": None}
    assert experts["per_layer"]["0"] == {"removed": [1, 2], "kept": [0, 3], "scores": MASS["code"][0]}
    assert experts["per_layer"]["1"] == {"removed": [1, 3], "kept": [0, 2], "scores": MASS["code"][1]}
    assert (experts["experts_before"], experts["experts_after"], experts["moe_layers"]) == (4, 2, [0, 1])
    assert experts["parameters_before"] - experts["parameters_after"] == experts["expert_parameters_before"] - experts["expert_parameters_after"] > 0
    assert experts["expert_parameters_after"] * 2 == experts["expert_parameters_before"]
    assert model.config.num_local_experts == 2
    news = ExpertPruning(0.5, TaylorMass(path, "news"))
    other = prune_model(moe("mixtral", dtype=torch.float32), tiny_tokenizer(), 0.0, calibration=CALIBRATION, experts=news)
    assert other["experts"]["per_layer"]["0"]["removed"] == [0, 2]  # another domain, other experts


@pytest.mark.slow
def test_reap_removal_through_prune_model_removes_the_lowest_reap_scores():
    model = moe("qwen2_moe")
    reference = copy.deepcopy(model)
    record = prune_model(model, tiny_tokenizer(), 0.0, calibration=CALIBRATION, experts=ExpertPruning(0.25, REAP()))
    from lit_activation.data.samples import calibration_ids

    c = CALIBRATION
    sums, routed, _ = naive_routing(reference, calibration_ids(c.dataset, tiny_tokenizer(), c.samples, c.seqlen, c.seed, c.files))
    for layer in (0, 1):
        reap = [s / t if t else 0.0 for s, t in zip(sums[layer], routed[layer], strict=True)]
        entry = record["experts"]["per_layer"][str(layer)]
        assert entry["scores"] == pytest.approx(reap, rel=1e-10) and entry["routed_tokens"] == routed[layer]
        assert entry["removed"] == [min(range(4), key=lambda e: (reap[e], e))]


@pytest.mark.slow
def test_two_stage_pruning_is_experts_first_then_the_weights_of_what_is_kept(monkeypatch):
    """Two stages in one call equal removing the experts, then pruning the weights of the cut-down model."""
    options = ExpertPruning(0.5, Frequency())
    together, staged = moe("mixtral", dtype=torch.float32), moe("mixtral", dtype=torch.float32)
    record = prune_model(together, tiny_tokenizer(), 0.5, metric=Wanda(), calibration=CALIBRATION, experts=options)
    prune_model(staged, tiny_tokenizer(), 0.0, calibration=CALIBRATION, experts=options)
    prune_model(staged, tiny_tokenizer(), 0.5, metric=Wanda(), calibration=CALIBRATION)
    assert record["method"] == "uniform" and record["experts"]["experts_after"] == 2 and record["achieved_sparsity"] == pytest.approx(0.5)
    for (name, a), b in zip(together.state_dict().items(), staged.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    weights_first = moe("mixtral", dtype=torch.float32)  # the other order prunes layer 1 from other inputs
    prune_model(weights_first, tiny_tokenizer(), 0.5, metric=Wanda(), calibration=CALIBRATION)
    prune_model(weights_first, tiny_tokenizer(), 0.0, calibration=CALIBRATION, experts=options)
    assert not all(torch.equal(a, b) for a, b in zip(together.state_dict().values(), weights_first.state_dict().values(), strict=True))


EIGHT = {"n_routed_experts": 8}  # DeepSeek-V3: 8 experts in 2 groups, a token's top-2 from 1 group


@pytest.mark.parametrize(("arch", "options", "ratio", "message"), [
    ("mixtral", {}, 1.0, r"experts.ratio 1.0 would remove every expert of each MoE layer; accepted: \[0, 1\)"),
    ("mixtral", {}, -0.25, r"experts.ratio -0.25 is outside \[0, 1\)"),
    ("mixtral", {}, 0.75, r"experts.ratio 0.75 keeps 1 of .*'s 4 experts per MoE layer, fewer than the 2 each token is routed to \(top-k\); .*\(at most 0.5\)"),
    ("olmoe", {"num_experts_per_tok": 3}, 0.5, r"keeps 2 of .*'s 4 experts per MoE layer, fewer than the 3 each token is routed to"),
    ("deepseek_v3", EIGHT, 0.125, r"keeps 7 of .*'s 8 experts per MoE layer; its router chooses among 2 groups of experts \(n_group\), which must divide"),
    ("deepseek_v3", EIGHT, 0.75, r"leaves 1 expert\(s\) in each of .*'s 2 expert groups \(n_group\); its router scores a group by its 2 best"),
    ("deepseek_v3", {**EIGHT, "num_experts_per_tok": 3}, 0.5, r"a token chooses 3 experts \(top-k\) from 1 group\(s\) \(topk_group\), which would hold only 2"),
    ("llama", {}, 0.25, r"has no experts to remove \(a dense model\): experts.ratio 0.25 applies to a mixture of experts"),
])
def test_a_removal_that_cannot_be_is_refused_before_the_model_changes(arch, options, ratio, message):
    model = tiny_model(arch) if arch == "llama" else moe(arch, dtype=torch.float32, **options)
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=message):
        prune_model(model, tiny_tokenizer(), 0.0, calibration=CALIBRATION, experts=ExpertPruning(ratio, REAP()))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_the_ratio_edges_just_inside_pass():
    mixtral, grouped = MoEShape((0, 1), 4, 2), MoEShape((1,), 8, 2, groups=2, top_groups=1)
    assert check_removal(0.5, mixtral, "m") == 2 and check_removal(0.0, mixtral, "m") == 4 and check_removal(0.74, mixtral, "m") == 2
    assert check_removal(0.25, grouped, "m") == 6 and check_removal(0.5, grouped, "m") == 4
    assert check_removal(0.29, MoEShape((0,), 100, 8), "m") == 71  # ⌊0.29 × 100⌋ is 29, not the 28 of floats


def test_a_method_that_cannot_prune_inside_experts_is_refused_and_counts_files_are_checked(tmp_path):
    model = moe("mixtral", dtype=torch.float32)
    refusal = r"is a mixture of experts: Taylor cannot prune inside its experts yet; accepted there: Wanda, Magnitude, SparseGPT"
    with pytest.raises(ValueError, match=refusal):
        prune_model(model, tiny_tokenizer(), 0.5, metric=Taylor(), calibration=CALIBRATION, experts=ExpertPruning(0.5))
    mixtral = "MixtralForCausalLM"
    path = counts_json(tmp_path, mixtral, MASS)
    for score, message in [
        (TaylorMass(path, "math"), r"Unknown dataset 'math' in counts file .*; accepted: \['code', 'news'\]"),
        (TaylorMass(counts_json(tmp_path, "another-moe", MASS, name="another.json")), r"holds counts of model 'another-moe'; this run prunes 'Mixtral"),
        (TaylorMass(counts_json(tmp_path, mixtral, {"code": {0: [1.0, 2, 3, 4]}}, name="1.json")), r"no per-expert Taylor mass for MoE layer\(s\) \[1\];"),
        (TaylorMass(counts_json(tmp_path, mixtral, {"code": {0: [1.0] * 3, 1: [1.0] * 3}}, name="three.json")), r"layer 0 has the Taylor mass of 3 experts"),
        (TaylorMass(counts_json(tmp_path, mixtral, {"code": {0: [1.0, -1.0, 0, 0], 1: [1.0] * 4}}, name="negative.json")), r"expert 1's Taylor mass is -1.0"),
    ]:
        with pytest.raises(ValueError, match=message):
            remove_scored_experts(model, ExpertPruning(0.5, score), None, 1, "MixtralForCausalLM")
    assert model.config.num_local_experts == 4


@pytest.mark.parametrize(("removed", "message"), [
    ({0: [1], 1: [0, 2]}, r"must lose the same number of experts, fewer than its 4"),
    ({0: [1, 4], 1: [0, 2]}, r"must lose the same number of experts"),
    ({0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}, r"fewer than its 4"),
    ({0: [1, 2]}, r"removed names layers \[0\]; the model's MoE layers are \[0, 1\]"),
])
def test_a_hand_made_removal_names_every_moe_layer_and_the_same_count(removed, message):
    model = moe("mixtral", dtype=torch.float32)
    with pytest.raises(ValueError, match=message):
        remove_experts(model, removed)
    assert MoEShape.of(model).experts == 4 and model.config.num_local_experts == 4
