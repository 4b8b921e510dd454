"""Finding 1: counts on hand-made means, and the Lightning callback against naive per-sample scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from naive import naive_means, per_layer
from tolerant import (
    assert_hist_close,
    decade_bounds,
    gap_threshold,
    layer_parts,
    near_edges,
    near_threshold,
    numpy_histogram,
    parts_of,
)

from lit_activation import counts as C
from lit_activation.callbacks.counts import ActivationCounts
from lit_activation.data.datamodule import ActivationDataModule
from lit_activation.models import decoder_layers, module_kind
from lit_activation.module import ActivationModule
from lit_activation.tiny import tiny_model

# log10 extremes 3e-7 and 5e-4 sit far from whole decades (a libm an ulp off cannot move floor/ceil);
# the γ tie 2e-5 > 2e-5 is exact (the same float on both sides)
MEANS = {"l0.a": torch.tensor([[1e-6, 3e-5], [2e-5, 0.0]]), "l0.b": torch.tensor([5e-5, 1e-4]), "l1.a": torch.tensor([[5e-4, 3e-7], [0.0, 0.0]])}
LAYER = {"l0.a": 0, "l0.b": 0, "l1.a": 1}
KIND = {"l0.a": "a", "l0.b": "b", "l1.a": "a"}


def test_counts_by_hand():
    assert C.layer_counts(MEANS, LAYER, 2, 2e-5).tolist() == [3, 1]  # 3e-5, 5e-5, 1e-4 | 5e-4 (2e-5 is not > 2e-5)
    kinds, per_module = C.module_counts(MEANS, LAYER, KIND, 2, 2e-5)
    assert dict(zip(kinds, per_module.tolist(), strict=True)) == {"a": [1, 1], "b": [2, 0]}
    assert C.zero_counts(MEANS, LAYER, 2).tolist() == [1, 2]
    assert C.log10_extent(MEANS) == pytest.approx((math.log10(3e-7), math.log10(5e-4)), rel=1e-6)
    assert C.histogram_range(*C.log10_extent(MEANS)) == (-7, -3)
    totals, sizes = C.layer_score_sums(MEANS, LAYER, 2)
    assert sizes.tolist() == [6, 4]
    assert (totals / sizes).tolist() == pytest.approx([(1e-6 + 3e-5 + 2e-5 + 5e-5 + 1e-4) / 6, (5e-4 + 3e-7) / 4], rel=1e-6)


def test_histogram_and_quantile_thresholds():
    # one point at the centre of each of 400 bins (0.01 decades) over [1e-6, 1e-2], plus a second one
    # in bin 0: 401 points, so q·401 never equals a cumulative count (no tie at a quantile)
    centres = -6 + (torch.arange(400, dtype=torch.float64) + 0.5) * 0.01
    means = {"m": 10 ** torch.cat([centres[:1], centres])}
    hist = C.layer_histograms(means, {"m": 0}, 1, -6, -2, bins=400)
    assert hist[0].tolist() == [2] + [1] * 399
    (t50, t90) = C.histogram_quantiles(hist, 0, -6, -2, [0.5, 0.9])
    # cumulative count of bin b is b + 2: q = 0.5 needs 200.5, reached in bin 199 (upper edge 1e-4);
    # q = 0.9 needs 360.9, reached in bin 359 (upper edge 10^-2.4)
    assert t50 == pytest.approx(1e-4, rel=1e-9)
    assert t90 == pytest.approx(10**-2.4, rel=1e-9)
    # zeros count below every bin: 401 zeros more put the median at the first bin's upper edge
    (t50,) = C.histogram_quantiles(hist, 401, -6, -2, [0.5])
    assert t50 == pytest.approx(10**-5.99, rel=1e-9)
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
    # max_length 160: boolq prompts (60-81 tokens) are all kept whole and padded (on the left), mmlu
    # prompts (157-195) partly cut, partly padded: the padded batched path against unpadded naive rows
    kwargs = dict(num_samples=5, batch_size=3, max_length=160, padding_side="left")
    means, layer_of, n_layers = naive_means(["boolq", "mmlu"], bench_files, kwargs)
    # γ in a gap of BOTH datasets' naive means: no value sits within rounding of it
    gamma = gap_threshold([p for d in means.values() for p in parts_of(d)], 0.6)
    result, dm = run_counts(tmp_path, bench_files, gamma, **kwargs)
    prefix, _ = decoder_layers(tiny_model("llama"))
    for d, name in enumerate(("boolq", "mmlu")):
        rows = [g.rows[0] for g in dm.groups if g.datasets[0] == d]
        assert any(len({len(r) for r in rows[i : i + 3]}) > 1 for i in range(0, len(rows), 3)), f"{name}: no batch is padded"
        got = result["datasets"][name]
        values = per_layer(means[name], layer_of, n_layers)
        parts = layer_parts(means[name], layer_of, n_layers)
        assert got["n_samples"] == 5
        assert got["layer_counts"] == [int((v > gamma).sum()) for v in values]
        expected_modules: dict[str, list[int]] = {}
        for module, mean in means[name].items():
            expected_modules.setdefault(module_kind(module, prefix), [0] * n_layers)[layer_of[module]] = int((mean > gamma).sum())
        assert got["module_counts"] == expected_modules
        np.testing.assert_allclose(got["mean_score_per_layer"], [float(v.double().mean()) for v in values], rtol=1e-5)
        # the log10 histogram against numpy's on the naive means; across a bin edge only the values
        # the naive means put within rounding of it may differ (usually none: then exact)
        hist = got["log10_histogram"]
        lo, hi, bins = hist["lo"], hist["hi"], len(hist["counts"][0])
        lows, highs = decade_bounds([p for layer in parts for p in layer])
        assert lo in lows and hi in highs, f"histogram range [{lo}, {hi}]; the naive means allow {lows}, {highs}"
        slack = [near_edges(p, lo, hi, bins) for p in parts]
        assert_hist_close(hist["counts"], [numpy_histogram(v, lo, hi, bins) for v in values], slack)
        # quantile thresholds: the upper edge of the bin holding the naive q-quantile of the pooled means
        pooled, everything = torch.cat(values).double(), [p for layer in parts for p in layer]
        width = (hi - lo) / bins
        assert set(got["quantile_counts"]) == {"q0.5", "q0.9", "q0.99"}
        for key, entry in got["quantile_counts"].items():
            q, t = float(key[1:]), entry["threshold"]
            b = round((math.log10(t) - lo) / width) - 1
            assert t == pytest.approx(10 ** (lo + (b + 1) * width), rel=1e-12), "not a bin edge"
            below = int((pooled < t).sum()) + near_threshold(everything, t)
            assert below / pooled.numel() >= q, f"{key}: only {below} of {pooled.numel()} naive means are below {t}"
            if b > 0:
                edge = 10 ** (lo + b * width)
                below = int((pooled < edge).sum()) - near_threshold(everything, edge)
                assert below / pooled.numel() < q, f"{key}: {below} of {pooled.numel()} naive means are below the bin's lower edge"
            for layer, (v, p) in enumerate(zip(values, parts, strict=True)):
                assert abs(entry["layer_counts"][layer] - int((v > t).sum())) <= near_threshold(p, t)
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
