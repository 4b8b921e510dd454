"""Finding 1 per expert of a mixture of experts: the table by hand, and the counts callback against naive
per-sample scores and the routers' own choices (docs/moe.md)."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lit_activation.analyses.experts import ACTIVATED, NOT_ACTIVATED, NOT_ROUTED, RoutingCounts, expert_summary
from lit_activation.callbacks.counts import ActivationCounts
from lit_activation.data.datamodule import ActivationDataModule
from lit_activation.engine.experts import RoutingRecord
from lit_activation.models.experts import is_router
from lit_activation.models.layers import decoder_layers, module_kind
from lit_activation.models.loading import load_causal_lm
from lit_activation.module import ActivationModule
from lit_activation.report.findings import separation, total_variation
from tests.helpers.naive import naive_unit_scores
from tests.helpers.tolerant import gap_threshold, near_threshold, parts_of


def test_expert_summary_by_hand():
    """Three experts in the one MoE layer 1 of 2: expert 0 routed and activated, 1 routed but below γ,
    2 not routed; shares, mean gate weights and per-token counts as computed by hand."""
    module_counts = {
        "self_attn.q_proj": [5, 7],
        "mlp.experts.0.gate_up_proj": [0, 6], "mlp.experts.0.down_proj": [0, 2],
        "mlp.experts.1.gate_up_proj": [0, 0], "mlp.experts.1.down_proj": [0, 0],
        "mlp.experts.2.gate_up_proj": [0, 0], "mlp.experts.2.down_proj": [0, 0],
    }
    tokens = torch.tensor([[4, 4, 0]])
    gate = torch.tensor([[2.0, 1.0, 0.0]], dtype=torch.float64)
    got = expert_summary(module_counts, tokens, gate, [1], {"mlp.experts.gate_up_proj": 12, "mlp.experts.down_proj": 6})
    table = got["per_layer"]["1"]
    assert got["layers"] == [1] and got["num_experts"] == 3
    assert table["routed_tokens"] == [4, 4, 0]
    assert table["token_share"] == [0.5, 0.5, 0.0]
    assert table["mean_gate_weight"] == [0.5, 0.25, None]
    assert table["activated"] == {"mlp.experts.gate_up_proj": [6, 0, 0], "mlp.experts.down_proj": [2, 0, 0]}
    assert table["activated_total"] == [8, 0, 0]
    assert table["activated_share"] == [1.0, 0.0, 0.0]
    assert table["activated_per_routed_token"] == [2.0, 0.0, None]
    assert table["state"] == [ACTIVATED, NOT_ACTIVATED, NOT_ROUTED]
    assert "taylor_mass" not in table
    mass = torch.tensor([[0.5, 0.25, 0.0]], dtype=torch.float64)
    assert expert_summary(module_counts, tokens, gate, [1], {}, mass)["per_layer"]["1"]["taylor_mass"] == [0.5, 0.25, 0.0]


def test_routing_counts_add_batches_and_ignore_sentinels():
    counts = RoutingCounts([1, 3], num_experts=3)
    ids = torch.tensor([[0, 2], [2, 3]])  # 3: an expert-parallel sentinel, no expert
    weights = torch.tensor([[0.75, 0.25], [0.5, 0.5]])
    counts.update(RoutingRecord("m.layers.3.mlp.experts", 3, 3, torch.tensor([0, 1]), ids, weights))
    counts.update(RoutingRecord("m.layers.3.mlp.experts", 3, 3, torch.tensor([0]), ids[:1], weights[:1]))
    assert counts.tokens.tolist() == [[0, 0, 0], [2, 0, 3]]
    assert counts.gate[1].tolist() == [1.5, 0.0, 1.0]
    counts.reset()
    assert not counts.tokens.any() and not counts.gate.any()


def test_total_variation_and_separation_by_hand():
    assert total_variation([1, 0, 0], [0, 1, 0]) == 1.0
    assert total_variation([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert total_variation([0.6, 0.4], [0.4, 0.6]) == pytest.approx(0.2)
    # three datasets: pairs (a,b) 1, (a,c) 0.5, (b,c) 0.5
    assert separation([[1, 0], [0, 1], [0.5, 0.5]]) == pytest.approx(2 / 3)


def naive_expert_truth(model, dm, layers):
    """Per dataset: fp64 mean scores per unit over its samples, and per MoE layer the real tokens each
    expert got and their gate weight sums, read off the routers' outputs one sample at a time."""
    means, routing = {}, {}
    handles, seen = [], []
    for layer, block in enumerate(decoder_layers(model)[1]):
        for router in (m for m in block.modules() if is_router(m)):
            handles.append(router.register_forward_hook(lambda m, a, out, layer=layer: seen.append((layer, out[2], out[1]))))
    try:
        for d, name in enumerate(dm.dataset_names):
            rows = [torch.tensor(g.rows[0]) for g in dm.groups if g.datasets[0] == d]
            per = [naive_unit_scores(model, row) for row in rows]
            means[name] = {n: torch.stack([p[n] for p in per]).mean(0) for n in per[0]}
            tokens = torch.zeros((len(layers), model.config.num_local_experts), dtype=torch.int64)
            gate = torch.zeros(tokens.shape, dtype=torch.float64)
            for row in rows:
                seen.clear()
                with torch.no_grad():
                    model(input_ids=row[None])
                for layer, ids, weights in seen:
                    for e, w in zip(ids.flatten().tolist(), weights.flatten().tolist(), strict=True):
                        tokens[layers.index(layer), e] += 1
                        gate[layers.index(layer), e] += w
            routing[name] = (tokens, gate)
    finally:
        for h in handles:
            h.remove()
    return means, routing


def test_counts_callback_per_expert_equals_naive(tmp_path, bench_files):
    """A tiny Mixtral through `Trainer.predict` with ActivationCounts: every expert module's activated
    parameters against fp64 per-sample means thresholded at a γ in a gap of them, and the routing
    against the routers' own choices, sample by sample; the files and the two figures are written."""
    kwargs = dict(num_samples=4, batch_size=2, max_length=32, padding_side="right")  # every arg-max leads by 2 %
    dm = ActivationDataModule(["boolq", "mmlu"], tokenizer="tiny-mixtral", data_files=bench_files, **kwargs)
    dm.setup()
    model, _ = load_causal_lm("tiny-mixtral")
    prefix, _ = decoder_layers(model)
    means, routing = naive_expert_truth(model, dm, [0, 1])
    gamma = gap_threshold([p for d in means.values() for p in parts_of(d)], 0.5)
    trainer = Trainer(
        accelerator="cpu", devices=1, inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t"),
        callbacks=[ActivationCounts(gamma=gamma)], enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.predict(ActivationModule(model="tiny-mixtral"), datamodule=ActivationDataModule(
        ["boolq", "mmlu"], data_files=bench_files, **kwargs), return_predictions=False)
    out = tmp_path / "t" / "version_0"
    result = json.loads((out / "counts.json").read_text())
    for name, unit_means in means.items():
        got = result["datasets"][name]
        for unit, mean in unit_means.items():
            kind = module_kind(unit, prefix)
            layer = int(unit[len(prefix) + 1 :].split(".")[0])
            slack = near_threshold(parts_of({unit: mean}), gamma)
            assert abs(got["module_counts"][kind][layer] - int((mean > gamma).sum())) <= slack, (name, unit)
        tokens, gate = routing[name]
        experts = got["experts"]
        assert experts["layers"] == [0, 1] and experts["num_experts"] == 4
        for row, layer in enumerate(experts["layers"]):
            table = experts["per_layer"][str(layer)]
            assert table["routed_tokens"] == tokens[row].tolist()
            for e, t in enumerate(tokens[row].tolist()):
                if t:
                    assert table["mean_gate_weight"][e] == pytest.approx(float(gate[row, e]) / t, rel=1e-5)
                total = sum(table["activated"][module][e] for module in table["activated"])
                assert total == table["activated_total"][e]
                assert table["state"][e] == (NOT_ROUTED if t == 0 else NOT_ACTIVATED if total == 0 else ACTIVATED)
                mass = sum(float(m.sum()) for unit, m in unit_means.items() if f".{layer}.mlp.experts.{e}." in unit)
                assert table["taylor_mass"][e] == pytest.approx(mass, rel=1e-4)  # Σ mean A over the expert's parameters
    assert {"counts.csv", "counts.png", "experts.csv", "experts.png"} <= {p.name for p in out.iterdir()}
    lines = (out / "experts.csv").read_text().splitlines()
    assert lines[0].startswith("dataset,layer,expert,routed_tokens") and len(lines) == 1 + 2 * 2 * 4
