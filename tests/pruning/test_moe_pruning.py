"""Pruning inside a mixture of experts' experts: Wanda and SparseGPT from each expert's own calibration
tokens, against a naive per-expert loop over the routers' own choices (docs/moe.md)."""

from __future__ import annotations

import pytest
import torch

from lit_activation.models.experts import experts_modules
from lit_activation.models.layers import block_linears, decoder_layers, weight_out_in
from lit_activation.models.tiny import tiny_model
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.expert_inputs import ExpertInputs
from lit_activation.pruning.metrics import GBLM, SparseGPT, Taylor, Wanda
from lit_activation.pruning.prune import achieved_sparsity, prune_sequential
from tests.helpers.naive import input_sums, naive_sparsegpt
from tests.pruning.test_prune import assert_clear_cut, smallest

# seed 1: no score of the three families' naive runs sits within rounding of a pruning cut
CALIBRATION = torch.randint(4, 100, (6, 16), generator=torch.Generator().manual_seed(1))


def naive_expert_inputs(model, index: int, policy: str, min_tokens: int) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Layer `index`'s expert slices' calibration inputs X (tokens, in), fp64, from whole-model forwards
    through transformers' own eager experts, the routed tokens found by a plain loop over each token's
    top-k choices; and each expert's routed token count. `min_tokens`: an expert with fewer takes every token."""
    _, layers = decoder_layers(model)
    (name, (module, layout)), = experts_modules(layers[index]).items()
    rows: dict[str, list] = {}
    counts: dict[str, int] = {f"{name}.{e}": 0 for e in range(module.num_experts)}
    hidden_all: list[torch.Tensor] = []

    def product(param, e, x):
        weight = getattr(module, param)[e].double()
        y = x @ weight if layout.transposed else x @ weight.t()
        return y + getattr(module, f"{param}_bias")[e].double() if layout.has_bias else y

    def take(mod, args):
        hidden, chosen, weights = args[0].double(), args[1], args[2].double()
        hidden_all.append(hidden)
        for t in range(hidden.shape[0]):
            for slot in range(chosen.shape[1]):
                e = int(chosen[t, slot])
                scale = float(weights[t, slot]) if policy == "routed_weighted" else 1.0
                counts[f"{name}.{e}"] += 1
                rows.setdefault(e, []).append((hidden[t], scale))

    model.config._experts_implementation = "eager"
    handle = module.register_forward_pre_hook(take)
    try:
        with torch.no_grad():
            for chunk in CALIBRATION.split(2):
                model(input_ids=chunk, use_cache=False)
    finally:
        handle.remove()
    inputs = {}
    everything = torch.cat(hidden_all)
    with torch.no_grad():
        for e in range(module.num_experts):
            if policy == "all_tokens" or counts[f"{name}.{e}"] < min_tokens:
                x, scale = everything, torch.ones(everything.shape[0], 1, dtype=torch.float64)
            else:
                x = torch.stack([r for r, _ in rows[e]])
                scale = torch.tensor([[s] for _, s in rows[e]], dtype=torch.float64)
            h = module._apply_gate(product(layout.first, e, x)) if layout.has_gate else module.act_fn(product(layout.first, e, x))
            inputs[f"{name}.{e}.{layout.first}"] = x * scale
            inputs[f"{name}.{e}.down_proj"] = h * scale
    return inputs, counts


def expert_views(block) -> dict:
    """Each expert slice's weight as (out, in), a view into the fused tensor."""
    out = {}
    for name, (module, layout) in experts_modules(block).items():
        for e in range(module.num_experts):
            for param in (layout.first, "down_proj"):
                weight = getattr(module, param)[e]
                out[f"{name}.{e}.{param}"] = weight.t() if layout.transposed else weight
    return out


def naive_wanda(model, sparsity: list[float], policy: str = "routed", min_tokens: int = 16) -> dict[str, int]:
    """Sequential Wanda by hand: per layer, ‖X‖ of the linears from hooks and of the expert slices from
    `naive_expert_inputs`, then each row's lowest |W|·‖X‖ zeroed by a Python sort; the routers stay dense."""
    prefix, layers = decoder_layers(model)
    tokens = {}
    for index, block in enumerate(layers):
        linears = {name: m for name, m in block_linears(block).items() if not name.endswith("mlp.gate")}
        norms = {n: s.sqrt() for n, s in input_sums(model, linears, CALIBRATION, 2, lambda x: x.pow(2).sum(0)).items()}
        weights = {name: weight_out_in(m) for name, m in linears.items()}
        inputs, counts = naive_expert_inputs(model, index, policy, min_tokens)
        tokens.update({f"{prefix}.{index}.{k}": v for k, v in counts.items()})
        norms.update({name: x.pow(2).sum(0).sqrt() for name, x in inputs.items()})
        weights.update(expert_views(block))
        with torch.no_grad():
            for name, weight in weights.items():
                scores = weight.abs().double() * norms[name][None]
                k = int(weight.shape[1] * sparsity[index])
                for row in range(weight.shape[0]):
                    values = scores[row].tolist()
                    order = smallest(values, len(values))
                    assert_clear_cut(values, order, k, f"{index} {name} row {row}", 1e-5)  # ours forms h in fp32: ~1e-7 apart
                    weight[row, order[:k]] = 0
    return tokens


def prune(model, metric, sparsity, **options) -> PruningContext:
    context = PruningContext(model, None, CALIBRATION, "", None, 2, expert_inputs=ExpertInputs(**options))
    prune_sequential(model, CALIBRATION, sparsity, metric=metric, batch_size=2, context=context)
    return context


def same_zeros(ours, reference) -> None:
    for (name, a), b in zip(ours.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(a == 0, b == 0), name


@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe", "gpt_oss"])
def test_wanda_prunes_each_expert_from_its_routed_tokens(arch):
    """Mixtral, Qwen2-MoE (its shared expert and gate pruned as linears) and gpt-oss (transposed,
    interleaved, biased): the masks are the naive loop's; every expert's routed tokens are recorded."""
    ours, reference = tiny_model(arch), tiny_model(arch)
    context = prune(ours, Wanda(), [0.5, 0.3], min_tokens=0)
    tokens = naive_wanda(reference, [0.5, 0.3], min_tokens=0)
    same_zeros(ours, reference)
    assert context.expert_tokens == tokens
    router = dict(ours.named_parameters())["model.layers.0.mlp.router.weight" if arch == "gpt_oss" else "model.layers.0.mlp.gate.weight"]
    assert not (router == 0).any()  # routers stay dense by default
    record = achieved_sparsity(ours, {})
    assert set(record["modules"]) >= {"model.layers.1.mlp.experts.3.down_proj"}


@pytest.mark.parametrize("policy", ["routed_weighted", "all_tokens"])
def test_the_other_policies_prune_from_their_own_tokens(policy):
    ours, reference = tiny_model("mixtral"), tiny_model("mixtral")
    prune(ours, Wanda(), [0.5, 0.5], policy=policy, min_tokens=0)
    naive_wanda(reference, [0.5, 0.5], policy=policy, min_tokens=0)
    same_zeros(ours, reference)


@pytest.mark.parametrize(("min_tokens", "fallback"), [(28, False), (29, True)])
def test_an_expert_with_few_tokens_takes_every_token_under_wanda(min_tokens, fallback):
    """gpt-oss's layer-1 expert 2 gets 28 routed tokens of this batch (the fewest): at min_tokens 29
    (just above) its statistics come from every token, at 28 (its count) from its own."""
    ours, reference = tiny_model("gpt_oss"), tiny_model("gpt_oss")
    context = prune(ours, Wanda(), [0.5, 0.3], min_tokens=min_tokens)
    naive_wanda(reference, [0.5, 0.3], min_tokens=min_tokens)
    assert context.expert_tokens["model.layers.1.mlp.experts.2"] == 28 == min(context.expert_tokens.values())
    same_zeros(ours, reference)
    own = tiny_model("gpt_oss")
    naive_wanda(own, [0.5, 0.3], min_tokens=0)
    mine, theirs = (dict(m.named_parameters())["model.layers.1.mlp.experts.down_proj"][2] == 0 for m in (ours, own))
    assert (not torch.equal(mine, theirs)) == fallback  # the rule changed that expert's mask exactly when it applied


def naive_sparsegpt_moe(model, sparsity: list[float], mask_group: int, min_tokens: int, few_damping: float) -> None:
    """Sequential SparseGPT by hand: per layer, H = 2·XᵀX in fp64 (linears from hooks, expert slices from
    their routed tokens), each unit pruned by the paper's equations (`naive_sparsegpt`); an expert with
    fewer than `min_tokens` tokens with the raised damping, none at all with H = I."""
    _, layers = decoder_layers(model)
    for index, block in enumerate(layers):
        linears = {name: m for name, m in block_linears(block).items() if not name.endswith("mlp.gate")}
        grams = input_sums(model, linears, CALIBRATION, 2, lambda x: 2 * x.T @ x)
        weights = {name: weight_out_in(m) for name, m in linears.items()}
        inputs, counts = naive_expert_inputs(model, index, "routed", 0)
        damping = {}
        for name, x in inputs.items():
            routed = counts[name.rsplit(".", 1)[0]]
            grams[name] = torch.eye(x.shape[1], dtype=torch.float64) if routed == 0 else 2 * x.T @ x
            damping[name] = few_damping if routed < min_tokens else 0.01
        weights.update(expert_views(block))
        with torch.no_grad():
            for name, weight in weights.items():
                pruned, _ = naive_sparsegpt(weight, grams[name], sparsity[index], mask_group=mask_group, percdamp=damping.get(name, 0.01), gap=1e-6)
                weight.copy_(pruned)


@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe", "gpt_oss"])
def test_sparsegpt_prunes_each_expert_as_the_papers_equations_on_its_tokens(arch):
    """H of each expert slice from its routed tokens, the few-token rule's damping on gpt-oss's sparsest
    expert (28 tokens, min_tokens 30): the weights are the fp64 column loop's within fp32 rounding, the masks its."""
    from tests.pruning.test_sparsegpt import assert_close_to_naive

    ours, reference = tiny_model(arch), tiny_model(arch)
    prune(ours, SparseGPT(blocksize=8, mask_group=16), [0.5, 0.5], min_tokens=30)
    naive_sparsegpt_moe(reference, [0.5, 0.5], 16, 30, 0.1)
    for (name, a), b in zip(ours.named_parameters(), reference.parameters(), strict=True):
        if a.dim() >= 2 and ".layers." in name and not name.endswith(("gate.weight", "router.weight")):
            assert_close_to_naive(a.detach().reshape(-1, a.shape[-1]), b.detach().double().reshape(-1, b.shape[-1]), (b == 0).reshape(-1, b.shape[-1]), name)


def test_routers_are_pruned_as_linears_only_when_asked():
    model = tiny_model("mixtral")
    prune(model, Wanda(), [0.5, 0.5], routers=True)
    assert float((model.model.layers[0].mlp.gate.weight == 0).double().mean()) == 0.5


@pytest.mark.parametrize("metric", [Taylor(), GBLM()], ids=["Taylor", "GBLM"])
def test_methods_that_score_the_dense_linears_refuse_a_mixture_of_experts(metric):
    with pytest.raises(ValueError, match=r"is a mixture of experts: .* cannot prune inside its experts yet; accepted there: Wanda, Magnitude, SparseGPT"):
        prune(tiny_model("mixtral"), metric, [0.5, 0.5])


def test_an_expert_no_token_reached_is_pruned_by_magnitude_order_with_no_column_dropped():
    """SparseGPT with no routed token: H = I (the raised damping adds nothing to it), as the paper's
    equations give for that H; a zero H would instead mark every column dead and zero the expert."""
    from lit_activation.models.experts import ExpertSlice

    model = tiny_model("mixtral")
    experts = model.model.layers[0].mlp.experts
    unit = ExpertSlice(experts, "down_proj", 1, False)
    before = unit.weight.detach().clone()
    context = PruningContext(model, None, CALIBRATION, "", None, 2, expert_inputs=ExpertInputs(min_tokens=4))
    context.expert_tokens["model.layers.0.mlp.experts.1"] = 0
    columns = before.shape[1]
    SparseGPT(blocksize=8, mask_group=16).prune("model.layers.0.mlp.experts.1.down_proj", unit, torch.zeros(columns, columns), 0.5, 0, 0, context)
    expected, mask = naive_sparsegpt(before, torch.eye(columns, dtype=torch.float64), 0.5, mask_group=16, percdamp=0.1, gap=1e-6)
    from tests.pruning.test_sparsegpt import assert_close_to_naive

    assert_close_to_naive(unit.weight.detach(), expected, mask, "expert 1")
    assert float((unit.weight == 0).double().mean()) == 0.5


def test_layer_sparsities_meet_the_target_over_all_weights():
    """Layers of unequal size (DeepSeek's dense first layer before MoE ones): scaled so that the
    parameter-weighted mean is the target; equal sizes: returned as they are, bit for bit."""
    from lit_activation.pruning.sparsity import over_all_weights

    same = [0.55, 0.45]
    assert over_all_weights(same, [100, 100], 0.5, "OWL") == same
    scaled = over_all_weights([0.6, 0.4], [100, 300], 0.5, "OWL")
    assert (100 * scaled[0] + 300 * scaled[1]) / 400 == pytest.approx(0.5, abs=1e-15)
    assert scaled[0] / scaled[1] == pytest.approx(1.5)  # the allocation's ratios kept
    with pytest.raises(ValueError, match=r"OWL allocation gives layer sparsities outside \[0, 1\)"):
        over_all_weights([0.9, 0.1], [1, 100], 0.5, "OWL")  # the small layer would need 4.2


@pytest.mark.parametrize("allocation", ["OWL", "AlphaPruning"])
def test_an_allocation_over_a_partly_dense_mixture_of_experts_meets_the_target(allocation):
    from lit_activation.pruning import allocations
    from lit_activation.pruning.prune import allocate_and_prune

    model = tiny_model("deepseek_v3")
    context = PruningContext(model, None, CALIBRATION, "", None, 2)
    sparsities, pruned = allocate_and_prune(context, 0.5, getattr(allocations, allocation)(), Wanda())
    record = achieved_sparsity(model, pruned)
    sizes = [sum(m["size"] for name, m in record["modules"].items() if f"layers.{i}." in name) for i in range(2)]
    assert sizes[0] != sizes[1]  # the dense layer and the MoE layer
    assert sum(s * p for s, p in zip(sparsities, sizes, strict=True)) / sum(sizes) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["Wanda", "SparseGPT"])
def test_the_plan_of_pruning_a_mixture_of_experts_matches_what_it_allocates(metric, tmp_path, monkeypatch):
    """The pruning phase's plan (the block's calibration inputs through the experts, each expert's H)
    against the tracked allocations of a real run on a tiny Mixtral: measured 1.01 for both."""
    from lit_activation.callbacks.pruning import Pruning
    from tests.callbacks.test_memory_needs import PRUNE, common, run_measured

    args = [*PRUNE, "--pruning.allocation", "Uniform", "--pruning.metric", metric, *common(tmp_path), "--model.model", "tiny-mixtral"]
    predicted, measured, _ = run_measured(Pruning, "validate", args, monkeypatch)
    assert predicted > 0 and 0.9 <= measured / predicted <= 1.1


def counts_json(path, layers: int = 2, experts: int = 4) -> str:
    """A counts.json of tiny-mixtral whose experts' activated parameters rise with the expert's index."""
    import json

    per_layer = {str(layer): {"activated_total": [10 * (e + 1) + layer for e in range(experts)]} for layer in range(layers)}
    entry = {"n_samples": 4, "layer_counts": [100] * layers, "quantile_counts": {}, "experts": {"num_experts": experts, "per_layer": per_layer}}
    path.write_text(json.dumps({"model": "tiny-mixtral", "gamma": 2e-5, "n_layers": layers, "datasets": {"code": entry}}))
    return str(path)


def expert_fractions(model, record) -> dict[str, float]:
    """Each expert's pruned fraction over its slices, from the record's modules."""
    out: dict[str, list[float]] = {}
    for name, m in record["modules"].items():
        if ".experts." in name:
            out.setdefault(name.rsplit(".", 1)[0], []).append(m["pruned"])
    return {key: sum(v) / len(v) for key, v in out.items()}


def test_the_paper_s_allocation_per_expert_spreads_each_layer_over_its_experts(tmp_path):
    """Activation per expert from a counts run's per-expert table: per layer, the paper's formula over the
    experts (no α: experts have no depth), by hand; each expert pruned at its own sparsity, their mean
    the layer's."""
    from lit_activation.pruning.allocations import Activation, CountsFile
    from lit_activation.pruning.prune import allocate_and_prune
    from tests.helpers.naive import paper_formula

    model = tiny_model("mixtral")
    allocation = Activation(CountsFile(counts_json(tmp_path / "counts.json"), "code"), per_expert=True)
    context = PruningContext(model, None, CALIBRATION, "", None, 2)
    layers, pruned = allocate_and_prune(context, 0.5, allocation, Wanda())
    for layer in (0, 1):
        expected = paper_formula([10 * (e + 1) + layer for e in range(4)], layers[layer], alpha=0.0)
        got = [context.expert_sparsity[f"model.layers.{layer}.mlp.experts.{e}"] for e in range(4)]
        assert got == pytest.approx(expected, abs=1e-12)
        assert sum(got) / 4 == pytest.approx(layers[layer], abs=1e-12) and got[0] > got[3]  # more activated, pruned less
        for e in range(4):  # every row of each of its slices loses ⌊in · s⌋ weights
            for param in ("gate_up_proj", "down_proj"):
                width = dict(model.named_parameters())[f"model.layers.{layer}.mlp.experts.{param}"].shape[2]
                assert pruned[f"model.layers.{layer}.mlp.experts.{e}.{param}"] == int(width * got[e]) / width


@pytest.mark.parametrize("allocation", ["OWL", "AlphaPruning"])
def test_owl_and_alphapruning_per_expert_keep_each_layer_s_sparsity(allocation):
    from lit_activation.pruning import allocations
    from lit_activation.pruning.prune import allocate_and_prune

    context = PruningContext(tiny_model("mixtral"), None, CALIBRATION, "", None, 2)
    layers, _ = allocate_and_prune(context, 0.5, getattr(allocations, allocation)(per_expert=True), Wanda())
    assert len(context.expert_sparsity) == 8
    for layer in (0, 1):
        got = [context.expert_sparsity[f"model.layers.{layer}.mlp.experts.{e}"] for e in range(4)]
        assert sum(got) / 4 == pytest.approx(layers[layer], abs=1e-12) and len(set(got)) > 1


def test_a_per_expert_allocation_on_a_dense_model_or_without_a_counts_file_is_refused(tmp_path):
    from lit_activation.pruning.allocations import OWL, Activation
    from lit_activation.pruning.prune import prune_model

    with pytest.raises(ValueError, match=r"OWL per_expert: true needs a mixture of experts; .* is dense \(accepted here: per_expert false\)"):
        prune_model(tiny_model("llama"), None, 0.5, allocation=OWL(per_expert=True))
    with pytest.raises(ValueError, match=r"Activation per_expert: true reads each expert's counts from a counts.json"):
        Activation(per_expert=True).check("tiny-mixtral", 2)
