"""Finding 1: counts on hand-made means, and the Lightning callback against naive per-sample scores."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from naive import naive_means, naive_scores, per_layer
from tolerant import REL, assert_hist_close, gap_threshold, near_edges, numpy_histogram

from lit_activation import counts as C
from lit_activation.callbacks.counts import ActivationCounts
from lit_activation.data.datamodule import ActivationDataModule
from lit_activation.models import decoder_layers, layer_index
from lit_activation.module import ActivationModule
from lit_activation.tiny import tiny_model

MEANS = {"l0.a": torch.tensor([[1e-6, 3e-5], [2e-5, 0.0]]), "l0.b": torch.tensor([5e-5, 1e-4]), "l1.a": torch.tensor([[1e-3, 1e-7], [0.0, 0.0]])}
LAYER = {"l0.a": 0, "l0.b": 0, "l1.a": 1}
KIND = {"l0.a": "a", "l0.b": "b", "l1.a": "a"}


def test_counts_by_hand():
    assert C.layer_counts(MEANS, LAYER, 2, 2e-5).tolist() == [3, 1]  # 3e-5, 5e-5, 1e-4 | 1e-3 (2e-5 is not > 2e-5)
    kinds, per_module = C.module_counts(MEANS, LAYER, KIND, 2, 2e-5)
    assert dict(zip(kinds, per_module.tolist(), strict=True)) == {"a": [1, 1], "b": [2, 0]}
    assert C.zero_counts(MEANS, LAYER, 2).tolist() == [1, 2]
    assert C.histogram_range(*C.log10_extent(MEANS)) == (-7, -3)
    totals, sizes = C.layer_score_sums(MEANS, LAYER, 2)
    assert (totals / sizes).tolist() == pytest.approx([(1e-6 + 3e-5 + 2e-5 + 5e-5 + 1e-4) / 6, 1e-3 / 4 + 1e-7 / 4])


def test_histogram_and_quantile_thresholds():
    means = {"m": torch.logspace(-6, -2, 1001)}
    hist = C.layer_histograms(means, {"m": 0}, 1, -6, -2, bins=400)
    assert int(hist.sum()) == 1001
    (t50, t90) = C.histogram_quantiles(hist, 0, -6, -2, [0.5, 0.9])
    assert abs(torch.log10(torch.tensor(t50)) - (-4.0)) <= 0.011  # within one bin (0.01 decades)
    assert abs(torch.log10(torch.tensor(t90)) - (-2.4)) <= 0.011
    with pytest.raises(ValueError, match="outside"):
        C.histogram_quantiles(hist, 0, -6, -2, [1.0])
    with pytest.raises(ValueError, match="zero"):
        C.histogram_range(*C.log10_extent({"m": torch.zeros(3)}))


def run_counts(tmp_path, files, gamma, **dm_kwargs):
    module = ActivationModule(model="tiny-llama")
    dm = ActivationDataModule(["boolq", "mmlu"], data_files=files, **dm_kwargs)
    trainer = Trainer(
        accelerator="cpu", devices=1, inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t"),
        callbacks=[ActivationCounts(gamma=gamma)], enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.predict(module, datamodule=dm, return_predictions=False)
    return json.loads((tmp_path / "t" / "version_0" / "counts.json").read_text()), dm


def test_callback_counts_equal_naive_mean_then_threshold(tmp_path, bench_files):
    kwargs = dict(num_samples=5, batch_size=3, max_length=48, padding_side="left")
    means, layer_of, n_layers = naive_means(["boolq", "mmlu"], bench_files, kwargs)
    # γ in a gap of BOTH datasets' naive means: no value sits within rounding of it
    gamma = gap_threshold([m for d in means.values() for m in d.values()], 0.6)
    result, _ = run_counts(tmp_path, bench_files, gamma, **kwargs)
    for name in ("boolq", "mmlu"):
        got = result["datasets"][name]
        values = per_layer(means[name], layer_of, n_layers)
        assert got["layer_counts"] == [int((v > gamma).sum()) for v in values]
        assert got["n_samples"] == 5
        assert sum(sum(v) for v in got["module_counts"].values()) == sum(got["layer_counts"])
        # the log10 histogram against numpy's on the naive means; quantile counts against plain counting
        hist = got["log10_histogram"]
        lo, hi, bins = hist["lo"], hist["hi"], len(hist["counts"][0])
        slack = [near_edges(v, lo, hi, bins) for v in values]
        assert_hist_close(hist["counts"], [numpy_histogram(v, lo, hi, bins) for v in values], slack)
        assert hist["zeros"] == [int((v == 0).sum()) for v in values]
        for entry in got["quantile_counts"].values():
            t = entry["threshold"]
            for layer, v in enumerate(values):
                near = int(((v.double() - t).abs() <= REL * t).sum())
                assert abs(entry["layer_counts"][layer] - int((v > t).sum())) <= near
    out = tmp_path / "t" / "version_0"
    assert {"counts.csv", "counts.png"} <= {p.name for p in out.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())


def test_existing_results_are_never_overwritten(tmp_path, bench_files):
    run_counts(tmp_path, bench_files, 1e-3, num_samples=2, batch_size=2, max_length=32)
    before = (tmp_path / "t" / "version_0" / "counts.json").read_bytes()
    module = ActivationModule(model="tiny-llama")
    dm = ActivationDataModule(["boolq", "mmlu"], data_files=bench_files, num_samples=2, max_length=32)
    trainer = Trainer(
        accelerator="cpu", inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t", version=0),
        callbacks=[ActivationCounts()], enable_progress_bar=False,
    )
    with pytest.raises(FileExistsError, match="counts.json"):
        trainer.predict(module, datamodule=dm, return_predictions=False)
    assert (tmp_path / "t" / "version_0" / "counts.json").read_bytes() == before


def test_predict_under_inference_mode_is_a_clear_error(tmp_path, bench_files):
    module = ActivationModule(model="tiny-llama")
    dm = ActivationDataModule(["boolq"], data_files=bench_files, num_samples=2, max_length=32)
    trainer = Trainer(accelerator="cpu", logger=False, callbacks=[ActivationCounts()], enable_progress_bar=False)
    with pytest.raises(RuntimeError, match="inference_mode"):
        trainer.predict(module, datamodule=dm, return_predictions=False)


def test_nan_scores_stop_the_run_naming_dataset_module_and_sample():
    from lit_activation.reduce import ScoreSum
    from lit_activation.scores import ScoreTile

    module = tiny_model("llama").model.layers[1].mlp.up_proj
    sums = ScoreSum({"model.layers.1.mlp.up_proj": module})
    sums.begin(3, "dataset 'boolq'", [7, 8, 9])
    grad = torch.ones((3, 4, module.weight.shape[1]))
    grad[1, 2, 5] = float("nan")
    tile = ScoreTile("model.layers.1.mlp.up_proj", slice(4, 8), grad, module.weight[4:8].abs())
    with pytest.raises(FloatingPointError, match=r"in dataset 'boolq', module model.layers.1.mlp.up_proj \(rows 4-7\), sample\(s\) \[8\]"):
        sums.update(tile)
