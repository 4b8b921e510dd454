"""LLMDcos, the similarity matrix and STS correlation against naive computations."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from scipy import stats

from lit_activation.analyses.similarity import (
    cosine_from_gram,
    deep_layers,
    layer_span,
    llmdcos,
    pair_rows,
    similarity_matrix,
)
from lit_activation.analyses.sts import duplicate_items, spearman, tied_values
from lit_activation.callbacks.llmdcos import LLMDcos
from lit_activation.callbacks.sts import STSCorrelation
from lit_activation.data.datamodule import ActivationDataModule
from lit_activation.models.layers import decoder_layers, layer_index, linear_modules
from lit_activation.module import ActivationModule
from tests.helpers.host import HostExits
from tests.helpers.naive import naive_pooled, naive_scores, naive_tfidf
from tests.helpers.tolerant import assert_distinct
from tests.helpers.trainers import trainer_for


def naive_layer_cos(model, ids_a: torch.Tensor, ids_b: torch.Tensor) -> np.ndarray:
    """Per layer, numpy cosine of the two samples' concatenated naive score vectors."""
    prefix, layers = decoder_layers(model)
    sa, sb = naive_scores(model, ids_a), naive_scores(model, ids_b)
    out = []
    for layer in range(len(layers)):
        names = [n for n in sa if layer_index(n, prefix) == layer]
        a = np.concatenate([sa[n].numpy().ravel() for n in names]).astype(np.float64)
        b = np.concatenate([sb[n].numpy().ravel() for n in names]).astype(np.float64)
        out.append(a @ b / np.sqrt((a @ a) * (b @ b)))
    return np.array(out)




def naive_hidden_cos(model, ids_a: torch.Tensor, ids_b: torch.Tensor) -> np.ndarray:
    """Per layer, numpy cosine of the two rows' mean-pooled block outputs."""
    a, b = naive_pooled(model, ids_a), naive_pooled(model, ids_b)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def as_batch(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def test_cosine_of_hand_made_vectors():
    a, b, c = torch.tensor([1.0, 0, 1]), torch.tensor([1.0, 1, 0]), torch.tensor([0.0, 2, 0])
    rows = torch.stack([a, b, c])
    cos = cosine_from_gram(rows @ rows.T)
    assert torch.allclose(cos, torch.tensor([[1, 0.5, 0], [0.5, 1, 2**-0.5], [0, 2**-0.5, 1]]))
    assert torch.isnan(cosine_from_gram(torch.zeros(2, 2))).all()  # 0/0 is reported, never hidden


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_llmdcos_equals_naive(arch, tiny_model):
    model = tiny_model(arch, layers=3)
    g = torch.Generator().manual_seed(0)
    a_rows = [torch.randint(4, 100, (n,), generator=g).tolist() for n in (7, 5)]
    b_rows = [torch.randint(4, 100, (n,), generator=g).tolist() for n in (4, 9)]
    got = llmdcos(model, as_batch(a_rows), as_batch(b_rows))
    assert got.shape == (2, 3)
    for i in range(2):
        expected = naive_layer_cos(model, torch.tensor(a_rows[i]), torch.tensor(b_rows[i]))
        np.testing.assert_allclose(got[i].numpy(), expected, rtol=1e-5)


def test_identical_inputs_give_one_in_every_layer(tiny_model):
    model = tiny_model("qwen2", layers=3)
    batch = as_batch([[5, 9, 11, 40], [7, 8]])
    torch.testing.assert_close(llmdcos(model, batch, batch), torch.ones(2, 3, dtype=torch.float64))


def test_mismatched_pair_counts_are_an_error(tiny_model):
    batch = as_batch([[5, 9], [7, 8]])
    with pytest.raises(ValueError, match="Pair counts differ: batch_a has 2 rows, batch_b 1"):
        llmdcos(tiny_model(), batch, as_batch([[5, 9]]))


def test_matrix_and_layer_ranges_by_hand():
    # 2 groups, 3 layers, 2 datasets (rows X_a, X_b, Y_a, Y_b)
    cos = torch.zeros(2, 3, 4, 4)
    cos[..., 0, 1] = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.4, 0.5]])  # X-X
    cos[..., 0, 2] = torch.tensor([[0.5, 0.5, 0.5], [0.7, 0.7, 0.9]])  # X-Y
    cos[..., 2, 0] = cos[..., 0, 2]
    cos[..., 2, 3] = 1.0  # Y-Y
    m = similarity_matrix(cos, 2, [1, 2])
    assert m.flatten().tolist() == pytest.approx([0.35, 0.65, 0.65, 1.0])
    assert pair_rows(0, 0) == (0, 1) and pair_rows(0, 1) == (0, 2) and pair_rows(1, 1) == (2, 3)
    assert deep_layers(32) == list(range(16, 30))
    assert deep_layers(2) == [1]  # tiny models: never an empty range
    assert layer_span(32, None, (20, 30)) == list(range(20, 31))
    assert layer_span(40, None, (20, 30)) == list(range(25, 39))
    with pytest.raises(ValueError, match="not within 0..29"):
        layer_span(30, [10, 30], (20, 30))


def test_spearman_is_scipys_exactly():
    pred = torch.tensor([0.1, 0.45, 0.4, 0.9, 0.3, 0.7, 0.2, 0.8])
    gold = torch.tensor([1.0, 2.0, 3.0, 5.0, 2.0, 4.0, 1.0, 4.0])
    ref = stats.spearmanr(pred.double().numpy(), gold.double().numpy())
    assert spearman(pred, gold) == (ref.statistic, ref.pvalue)
    with pytest.raises(ValueError, match="Mismatched pair counts: 8 predictions vs 7"):
        spearman(pred, gold[:7])
    with pytest.raises(FloatingPointError, match="NaN"):
        spearman(torch.tensor([0.1, float("nan"), 0.3]), gold[:3])


def test_ties_get_average_ranks():
    # pred ranks by hand: 0.2 -> 1, the two 0.5 -> (2 + 3) / 2 = 2.5, 0.9 -> 4; gold ranks 1..4.
    # ρ = Pearson of the ranks: centred [-1.5, 0, 0, 1.5] and [-1.5, -0.5, 0.5, 1.5] give 4.5 / sqrt(4.5 * 5).
    rho, _ = spearman(torch.tensor([0.2, 0.5, 0.5, 0.9]), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert rho == pytest.approx(4.5 / math.sqrt(4.5 * 5.0), rel=1e-12)
    assert tied_values(torch.tensor([0.2, 0.5, 0.5, 0.9, 0.9, 0.9])) == 5
    assert duplicate_items([(1, 2), (3, 4), (1, 2), (1, 2)]) == 2




def test_llmdcos_callback_equals_naive_pairs(tmp_path, bench_files, tiny_model):
    dm = ActivationDataModule(["boolq", "gsm8k"], mode="pairs", num_samples=3, max_length=40, batch_size=2, data_files=bench_files)
    trainer_for(tmp_path, LLMDcos()).predict(ActivationModule(model="tiny-llama"), datamodule=dm, return_predictions=False)
    out = json.loads((tmp_path / "t" / "version_0" / "llmdcos.json").read_text())
    model = tiny_model()
    naive = {}
    for key, (x, y) in {"boolq-boolq": (0, 0), "boolq-gsm8k": (0, 1), "gsm8k-gsm8k": (1, 1)}.items():
        i, j = pair_rows(x, y)
        naive[key] = np.stack([naive_layer_cos(model, torch.tensor(g.rows[i]), torch.tensor(g.rows[j])) for g in dm.groups])
        np.testing.assert_allclose(np.array(out["llmdcos"][key]), naive[key], rtol=1e-5)
    assert out["matrix_layers"] == [1, 1]  # deep layers of a 2-layer model
    expected = [[naive[f"{x}-{y}" if x <= y else f"{y}-{x}"][:, 1].mean() for y in ("boolq", "gsm8k")] for x in ("boolq", "gsm8k")]
    np.testing.assert_allclose(np.array(out["matrix"]), np.array(expected), rtol=1e-5)
    assert (tmp_path / "t" / "version_0" / "similarity_matrix.png").is_file()


def run_sts(tmp_path, files, n: int = 12) -> tuple[dict, ActivationDataModule]:
    dm = ActivationDataModule(["stsb"], mode="sts", num_samples=n, max_length=64, batch_size=4, data_files=files)
    trainer_for(tmp_path, STSCorrelation(layers=[0, 1])).predict(ActivationModule(model="tiny-llama"), datamodule=dm, return_predictions=False)
    return json.loads((tmp_path / "t" / "version_0" / "sts.json").read_text()), dm


def test_sts_callback_equals_naive_pairs_and_scipy(tmp_path, bench_files, tiny_model):
    out, dm = run_sts(tmp_path, bench_files)
    model = tiny_model()
    naive = np.stack([naive_layer_cos(model, torch.tensor(g.rows[0]), torch.tensor(g.rows[1])) for g in dm.groups])
    # per-pair values: the batched scorer against the naive loop, to float precision
    np.testing.assert_allclose(out["layer_sum"], naive[:, [0, 1]].sum(1), rtol=1e-5)
    np.testing.assert_allclose(out["gold"], [g.gold for g in dm.groups])
    # the reported ρ and p are exactly scipy's on the values the callback saved
    ref = stats.spearmanr(out["layer_sum"], out["gold"])
    assert (out["spearman"], out["p_value"]) == (ref.statistic, ref.pvalue)
    # and the ranks cannot depend on rounding: the fixture's pairs are far from tied, so ρ is also
    # scipy's on the naive values
    assert_distinct(naive[:, [0, 1]].sum(1), rel=1e-4)
    assert out["spearman"] == stats.spearmanr(naive[:, [0, 1]].sum(1), out["gold"]).statistic
    assert out["n_pairs"] == 12 and len(out["per_layer_spearman"]) == 2
    # the per-layer LLMDcos saved in sts.csv: the naive cosines, pair by pair
    saved = np.array(_csv_layers(tmp_path))
    assert saved.shape == (12, 2)
    np.testing.assert_allclose(saved, naive, rtol=1e-5)
    for layer, rho in enumerate(out["per_layer_spearman"]):
        assert rho == stats.spearmanr(saved[:, layer], out["gold"]).statistic
        assert_distinct(naive[:, layer], rel=1e-4)  # no near-ties: the saved and naive ranks agree
        assert rho == stats.spearmanr(naive[:, layer], out["gold"]).statistic
    # layer windows (a third of the depth: width 1 for 2 layers): scipy on the saved values summed
    assert out["window_width"] == 1
    assert [(w["first"], w["last"]) for w in out["window_spearman"]] == [(0, 0), (1, 1)]
    for w in out["window_spearman"]:
        summed = saved[:, w["first"] : w["last"] + 1].sum(1)
        assert w["spearman"] == stats.spearmanr(summed, out["gold"]).statistic


def test_sts_baselines_equal_naive_and_scipy(tmp_path, bench_files, tiny_model):
    out, dm = run_sts(tmp_path, bench_files)
    model = tiny_model()
    assert any(len(g.rows[0]) != len(g.rows[1]) for g in dm.groups)  # precondition: padded rows share batches
    # hidden states: every block's output, mean-pooled per unpadded sentence, cosines by hand
    naive = np.stack([naive_hidden_cos(model, torch.tensor(g.rows[0]), torch.tensor(g.rows[1])) for g in dm.groups])
    saved = np.array(_csv_layers(tmp_path, "hidden"))
    np.testing.assert_allclose(saved, naive, rtol=1e-5)
    np.testing.assert_allclose(out["hidden_layer_sum"], saved[:, [0, 1]].sum(1), rtol=1e-12)
    # TF-IDF fitted on the run's 24 sentences, pair i = sentence i with sentence 12 + i
    rows = naive_tfidf([g.texts[0] for g in dm.groups] + [g.texts[1] for g in dm.groups])
    np.testing.assert_allclose(out["tfidf"], [rows[i] @ rows[12 + i] for i in range(12)], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(_csv_column(tmp_path, "tfidf"), out["tfidf"], rtol=0)
    # every reported ρ is scipy's on the values saved beside it
    ref = stats.spearmanr(out["hidden_layer_sum"], out["gold"])
    assert (out["hidden_spearman"], out["hidden_p_value"]) == (ref.statistic, ref.pvalue)
    ref = stats.spearmanr(out["tfidf"], out["gold"])
    assert (out["tfidf_spearman"], out["tfidf_p_value"]) == (ref.statistic, ref.pvalue)
    assert out["hidden_per_layer_spearman"] == [stats.spearmanr(saved[:, layer], out["gold"]).statistic for layer in range(2)]
    assert set(out["baselines"]) == {"hidden", "tfidf"}


def _csv_column(tmp_path, name: str) -> list[float]:
    import csv

    with open(tmp_path / "t" / "version_0" / "sts.csv") as f:
        return [float(r[name]) for r in csv.DictReader(f)]


def _csv_layers(tmp_path, measure: str = "llmdcos") -> list[list[float]]:
    return [list(row) for row in zip(*(_csv_column(tmp_path, f"{measure}_layer{layer}") for layer in range(2)), strict=True)]


def test_sts_warns_once_about_duplicate_pairs(tmp_path, caplog):
    import csv

    path = tmp_path / "stsb.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence1", "sentence2", "score"])
        w.writerows([("a cat sat", "a dog sat", 0.5), ("a cat sat", "a dog sat", 0.5), ("red mat", "blue log", 0.1), ("old log", "new log", 0.7)])
    with caplog.at_level(logging.WARNING, logger="lit_activation.callbacks.sts"):
        out, dm = run_sts(tmp_path, {"stsb": str(path)}, n=4)
    warnings = [r.getMessage() for r in caplog.records if r.name == "lit_activation.callbacks.sts"]
    assert len(warnings) == 1
    assert "1 duplicate pair(s)" in warnings[0] and "of 4" in warnings[0]
    first, second = [i for i, g in enumerate(dm.groups) if g.gold == 0.5]  # the duplicated pair
    assert dm.groups[first].rows == dm.groups[second].rows
    assert out["layer_sum"][first] == pytest.approx(out["layer_sum"][second], rel=1e-6)


@pytest.mark.parametrize(
    ("callback", "message"),
    [
        (lambda: LLMDcos(box_pairs=[["boolq", "mmlu"]]), r"box_pairs entry \['boolq', 'mmlu'\] must be two of the run's datasets"),
        (lambda: LLMDcos(matrix_layers=[0, 2]), r"Layer range \[0, 2\] is not within 0..1"),
        (lambda: LLMDcos(box_pairs=[["boolq", "gsm8k"]], matrix_layers=[0, 1]), None),  # the edge itself: tiny-llama has 2 layers
    ],
)
def test_bad_llmdcos_options_fail_before_the_model_loads(tmp_path, bench_files, no_model_loading, callback, message):
    dm = ActivationDataModule(["boolq", "gsm8k"], mode="pairs", num_samples=2, max_length=40, data_files=bench_files)
    with pytest.raises(ValueError, match=message) if message else pytest.raises(no_model_loading):
        trainer_for(tmp_path, callback()).predict(ActivationModule(model="tiny-llama"), datamodule=dm, return_predictions=False)


def test_no_parameter_sized_tensor_goes_to_the_host_during_llmdcos_and_sts_runs(tmp_path, bench_files, tiny_model):
    """LLMDcos and STS keep their reductions on the scores' device like Finding 1 does: what the
    project's code sends to the host is per-group Gram matrices and results, never a module's worth."""
    smallest = min(m.weight.numel() for m in linear_modules(tiny_model()).values())
    with HostExits() as exits:
        dm = ActivationDataModule(["boolq", "gsm8k"], mode="pairs", num_samples=3, max_length=40, batch_size=2, data_files=bench_files)
        trainer_for(tmp_path / "llmdcos", LLMDcos()).predict(ActivationModule(model="tiny-llama"), datamodule=dm, return_predictions=False)
        run_sts(tmp_path / "sts", bench_files, n=8)
    assert 0 < exits.largest < smallest, f"a tensor of {exits.largest} values went to the host; the smallest module has {smallest}"


@pytest.mark.parametrize(("n", "stops"), [(2, True), (3, False)])
def test_fewer_than_three_sts_pairs_stop_before_the_model_loads(tmp_path, bench_files, no_model_loading, n, stops):
    expected = pytest.raises(ValueError, match=r"^STSCorrelation needs at least 3 sentence pairs for a Spearman ρ; data.init_args.num_samples is 2$")
    with expected if stops else pytest.raises(no_model_loading):
        run_sts(tmp_path, bench_files, n=n)


def test_a_sweep_wider_than_the_model_stops_before_scoring(tmp_path, bench_files):
    with pytest.raises(ValueError, match=r"^sweep_width must be >= 1 layer"):
        STSCorrelation(sweep_width=0)
    dm = ActivationDataModule(["stsb"], mode="sts", num_samples=3, max_length=64, batch_size=4, data_files=bench_files)
    with pytest.raises(ValueError, match=r"^sweep_width 3 is wider than the model's 2 layers; accepted: 1..2$"):
        trainer_for(tmp_path, STSCorrelation(sweep_width=3)).predict(ActivationModule(model="tiny-llama"), datamodule=dm, return_predictions=False)
    assert not list(tmp_path.rglob("sts.json"))
    trainer_for(tmp_path / "ok", STSCorrelation(sweep_width=2)).predict(ActivationModule(model="tiny-llama"), datamodule=dm, return_predictions=False)
    assert json.loads(next((tmp_path / "ok").rglob("sts.json")).read_text())["n_pairs"] == 3
