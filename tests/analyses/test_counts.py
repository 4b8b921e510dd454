"""Finding 1: counts on hand-made means, and the Lightning callback against naive per-sample scores."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lit_activation.analyses import counts as C
from lit_activation.callbacks.counts import ActivationCounts
from lit_activation.data.datamodule import ActivationDataModule
from lit_activation.models.layers import decoder_layers, linear_modules, module_kind
from lit_activation.module import ActivationModule
from tests.helpers.host import HostExits
from tests.helpers.interpreter import needs_interpreter
from tests.helpers.naive import naive_means, per_layer
from tests.helpers.tolerant import (
    assert_hist_close,
    decade_bounds,
    gap_threshold,
    layer_parts,
    near_edges,
    near_threshold,
    numpy_histogram,
    parts_of,
)

# log10 extremes 3e-7 and 5e-4 sit far from whole decades (a libm an ulp off cannot move floor/ceil);
# the γ tie 2e-5 > 2e-5 is exact (the same float on both sides)
MEANS = {"l0.a": torch.tensor([[1e-6, 3e-5], [2e-5, 0.0]]), "l0.b": torch.tensor([5e-5, 1e-4]), "l1.a": torch.tensor([[5e-4, 3e-7], [0.0, 0.0]])}
LAYER = {"l0.a": 0, "l0.b": 0, "l1.a": 1}
KIND = {"l0.a": "a", "l0.b": "b", "l1.a": "a"}


def fp32(x: float) -> float:
    """x as the fp32 value the means are compared with."""
    return float(torch.tensor(x, dtype=torch.float64).float())


def test_counts_by_hand():
    stats = C.layer_stats(MEANS, LAYER, KIND, 2, 2e-5)
    assert stats.min_positive.tolist() == [fp32(1e-6), fp32(3e-7)]
    assert stats.max.tolist() == [fp32(1e-4), fp32(5e-4)]
    assert stats.zeros.tolist() == [1, 2]
    # above γ per kind and layer: a: 3e-5 | 5e-4; b: 5e-5, 1e-4 | none (2e-5 is not > 2e-5)
    assert dict(zip(stats.kinds, stats.above_gamma.tolist(), strict=True)) == {"a": [1, 1], "b": [2, 0]}
    assert stats.sums.tolist() == pytest.approx([1e-6 + 3e-5 + 2e-5 + 5e-5 + 1e-4, 5e-4 + 3e-7], rel=1e-6)
    assert C.log10_extent(stats) == pytest.approx((math.log10(3e-7), math.log10(5e-4)), rel=1e-6)
    assert C.histogram_range(*C.log10_extent(stats)) == (-7, -3)
    assert C.layer_counts(MEANS, LAYER, 2, 2e-5).tolist() == [3, 1]


def test_buckets_histogram_and_exact_counts_above_an_edge_by_hand():
    """Edges 1e-7 … 1e-3 (4 bins): bucket i holds e_(i-1) < v ≤ e_i; a value equal to an edge
    (1e-6, 1e-4: the same fp32 value on both sides) belongs to the bucket below it."""
    edges = C.bin_edges(-7, -3, 4)
    assert edges.tolist() == [fp32(10.0**k) for k in range(-7, -2)]
    buckets = C.bucket_counts(MEANS, LAYER, 2, edges)
    assert buckets.tolist() == [[1, 1, 0, 4, 0, 0], [2, 1, 0, 0, 1, 0]]
    stats = C.layer_stats(MEANS, LAYER, KIND, 2, 2e-5)
    assert C.histogram_of(buckets, stats.zeros).tolist() == [[1, 0, 4, 0], [1, 0, 0, 1]]
    summary = C.dataset_summary(MEANS, LAYER, KIND, 2, 2e-5, [0.45, 0.85], bins=4)
    # 3 zeros + 7 values; cumulative share per bin (zeros first): 0.5, 0.5, 0.9, 1.0
    assert summary["quantile_counts"] == {
        "q0.45": {"threshold": fp32(1e-6), "layer_counts": [4, 1]},  # > 1e-6: 2e-5, 3e-5, 5e-5, 1e-4 | 5e-4
        "q0.85": {"threshold": fp32(1e-4), "layer_counts": [0, 1]},  # > 1e-4: nothing (1e-4 itself is not) | 5e-4
    }
    assert summary["layer_counts"] == [3, 1]
    assert summary["module_counts"] == {"a": [1, 1], "b": [2, 0]}
    assert summary["log10_histogram"] == {"lo": -7, "hi": -3, "counts": [[1, 0, 4, 0], [1, 0, 0, 1]], "zeros": [1, 2]}
    assert summary["mean_score_per_layer"] == pytest.approx([(1e-6 + 3e-5 + 2e-5 + 5e-5 + 1e-4) / 6, (5e-4 + 3e-7) / 4], rel=1e-6)


def edges_below(values: torch.Tensor, edges: torch.Tensor) -> list[int]:
    """Per value, how many edges are strictly below it, by plain Python comparisons of the floats."""
    edge_list = edges.tolist()
    return [sum(e < v for e in edge_list) for v in values.tolist()]


def awkward_values(edges: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Every edge, its fp32 neighbours on both sides, both zeros, a subnormal, negatives, +inf and
    values spread over 30 decades around the edges."""
    up, down = torch.nextafter(edges, torch.tensor(math.inf)), torch.nextafter(edges, torch.tensor(0.0))
    special = torch.tensor([0.0, -0.0, 1e-44, -1.0, -1e-30, math.inf, 3.4e38])
    spread = 10 ** (torch.rand(3000, generator=g, dtype=torch.float64) * 30 - 20)
    return torch.cat([edges, up, down, special, spread.float()])


@pytest.mark.parametrize("lo,hi,bins", [(-7, -3, 100), (-12, 1, 100), (-6, -5, 100), (-40, 30, 7)])
def test_the_edge_table_counts_the_edges_below_each_value_exactly(lo, hi, bins):
    """The bit-range table against Python comparisons, on values at, next to and between the edges."""
    edges = C.bin_edges(lo, hi, bins)
    table = C.EdgeTable.of(edges)
    assert table is not None
    values = awkward_values(edges, torch.Generator().manual_seed(bins))
    got = table.bucketize(values[::2])  # a strided view, as a chunk of a transposed mean could be
    assert got.dtype == torch.int32 and got.tolist() == edges_below(values[::2], edges)
    assert table.bucketize(values[1::2]).tolist() == edges_below(values[1::2], edges)


def test_edges_closer_than_a_bit_range_fall_back_to_a_search_with_the_same_counts():
    """2000 bins in one decade put two edges in one range of 2^16 floats: no table, same counts."""
    edges = C.bin_edges(-6, -5, 2000)
    assert C.EdgeTable.of(edges) is None
    assert C.EdgeTable.of(C.bin_edges(-6, -5, 200)) is not None  # 10^(1/200) apart: still one per range
    values = awkward_values(edges[::40], torch.Generator().manual_seed(1))
    values = torch.cat([values, edges[100:140], torch.nextafter(edges[100:140], torch.tensor(1.0))])
    counts = C.bucket_counts({"m": values}, {"m": 0}, 1, edges)
    assert counts[0].tolist() == np.bincount(edges_below(values, edges), minlength=2002).tolist()


def test_a_dataset_is_finished_in_chunks_without_a_parameter_sized_host_copy(monkeypatch):
    """Chunked passes give the same result as one chunk, and nothing value-sized leaves the device."""
    g = torch.Generator().manual_seed(0)
    means = {f"m{i}": torch.rand(300, 70, generator=g) ** 4 for i in range(4)}
    means["m0"][:3] = 0
    layer, kind = {f"m{i}": i // 2 for i in range(4)}, {f"m{i}": "ab"[i % 2] for i in range(4)}
    whole = C.dataset_summary(means, layer, kind, 2, 0.01, [0.5, 0.9], bins=20)

    monkeypatch.setattr(C, "CHUNK", 1000)  # 21 chunks per module
    with HostExits() as exits:
        chunked = C.dataset_summary(means, layer, kind, 2, 0.01, [0.5, 0.9], bins=20)
    assert chunked["mean_score_per_layer"] == pytest.approx(whole.pop("mean_score_per_layer"), rel=1e-12)  # fp64 sums, other order
    assert {k: v for k, v in chunked.items() if k != "mean_score_per_layer"} == whole  # counts: exact whatever the chunks
    assert 0 < exits.largest < 100  # per-layer results only (2 layers × 20 bins); a chunk is 1000 values




def test_the_host_exit_spy_sees_inside_the_backward_pass():
    """A host copy by our code in a gradient hook (where the engine's tiles are reduced) is recorded;
    the test's own copies are not."""
    def own_copy(grad: torch.Tensor) -> None:
        grad.cpu()  # the test's own copy: not counted

    def ours(grad: torch.Tensor) -> None:
        C.quantile_bins(grad.view(1, -1), 0, [0.5])  # sends its 700 pooled bins to the host

    w = torch.ones(700, requires_grad=True)
    with HostExits() as exits:
        y = w * 2
        y.register_hook(own_copy)
        torch.autograd.grad(y.sum(), w)
        assert exits.largest == 0
        z = w * 3
        z.register_hook(ours)
        torch.autograd.grad(z.sum(), w)
    assert exits.largest == 700


def test_no_parameter_sized_tensor_goes_to_the_host_during_a_counts_run(tmp_path, bench_files, tiny_model):
    smallest = min(m.weight.numel() for m in linear_modules(tiny_model()).values())
    with HostExits() as exits:
        run_counts(tmp_path, bench_files, 1e-3, num_samples=2, batch_size=2, max_length=32)
    assert 0 < exits.largest < smallest, f"a tensor of {exits.largest} values went to the host; the smallest module has {smallest}"


def test_histogram_and_quantile_thresholds():
    # one point at the centre of each of 400 bins (0.01 decades) over [1e-6, 1e-2], plus a second one
    # in bin 0: 401 points, so q·401 never equals a cumulative count (no tie at a quantile)
    centres = -6 + (torch.arange(400, dtype=torch.float64) + 0.5) * 0.01
    means = {"m": (10 ** torch.cat([centres[:1], centres])).float()}
    edges = C.bin_edges(-6, -2, 400)
    zeros = torch.zeros(1, dtype=torch.int64)
    hist = C.histogram_of(C.bucket_counts(means, {"m": 0}, 1, edges), zeros)
    assert hist[0].tolist() == [2] + [1] * 399
    # cumulative count of bin b is b + 2: q = 0.5 needs 200.5, reached in bin 199 (upper edge 1e-4);
    # q = 0.9 needs 360.9, reached in bin 359 (upper edge 10^-2.4)
    assert C.quantile_bins(hist, 0, [0.5, 0.9]) == [199, 359]
    assert float(edges[200]) == fp32(1e-4) and float(edges[360]) == fp32(10**-2.4)
    # zeros count below every bin: 401 zeros more put the median in the first bin
    assert C.quantile_bins(hist, 401, [0.5]) == [0]
    with pytest.raises(ValueError, match="outside"):
        C.quantile_bins(hist, 0, [1.0])
    stats = C.layer_stats({"m": torch.zeros(3)}, {"m": 0}, {"m": "k"}, 1, 0.1)
    with pytest.raises(ValueError, match="zero"):
        C.histogram_range(*C.log10_extent(stats))


def run_counts(tmp_path, files, gamma, **dm_kwargs):
    module = ActivationModule(model="tiny-llama")
    dm = ActivationDataModule(["boolq", "mmlu"], data_files=files, **dm_kwargs)
    trainer = Trainer(
        accelerator="cpu", devices=1, inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t"),
        callbacks=[ActivationCounts(gamma=gamma)], enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.predict(module, datamodule=dm, return_predictions=False)
    return json.loads((tmp_path / "t" / "version_0" / "counts.json").read_text()), dm


def test_callback_counts_equal_naive_mean_then_threshold(tmp_path, bench_files, tiny_model):
    # max_length 160: boolq prompts (60-81 tokens) are all kept whole and padded (on the left), mmlu
    # prompts (157-195) partly cut, partly padded: the padded batched path against unpadded naive rows
    kwargs = dict(num_samples=5, batch_size=3, max_length=160, padding_side="left")
    means, layer_of, n_layers = naive_means(["boolq", "mmlu"], bench_files, kwargs)
    # γ in a gap of BOTH datasets' naive means: no value sits within rounding of it
    gamma = gap_threshold([p for d in means.values() for p in parts_of(d)], 0.6)
    result, dm = run_counts(tmp_path, bench_files, gamma, **kwargs)
    prefix, _ = decoder_layers(tiny_model())
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
            assert t == fp32(10 ** (lo + (b + 1) * width)), "not a bin edge (as the fp32 value the means are compared with)"
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


def test_nan_scores_stop_the_run_naming_dataset_module_and_sample(tiny_model):
    from lit_activation.engine import ScoreSum
    from lit_activation.engine.scores import ScoreTile, finite_rows

    module = tiny_model().model.layers[1].mlp.up_proj
    sums = ScoreSum({"model.layers.1.mlp.up_proj": module})
    sums.begin(3, "dataset 'boolq'", [7, 8, 9])
    x, delta = torch.ones(3, 5, module.weight.shape[1]), torch.ones(3, 5, module.weight.shape[0])
    x[1, 2, 5] = float("nan")  # sample 1 (id 8) carries a NaN into its gradient
    finite = finite_rows(x, delta)
    assert finite.tolist() == [True, False, True]
    grad = torch.ones((3, 4, module.weight.shape[1]))
    grad[1, 2, 5] = float("nan")
    sums.update(ScoreTile("model.layers.1.mlp.up_proj", slice(4, 8), grad, module.weight[4:8].abs(), finite))
    # no host sync per tile: the check waits for the batch's end
    with pytest.raises(FloatingPointError, match=r"in dataset 'boolq', module model.layers.1.mlp.up_proj \(rows 4-7\), sample\(s\) \[8\]"):
        sums.end()


def test_an_overflow_with_finite_inputs_names_the_batch(tiny_model):
    from lit_activation.engine import ScoreSum
    from lit_activation.engine.scores import ScoreTile

    module = tiny_model().model.layers[0].mlp.up_proj
    sums = ScoreSum({"up": module})
    sums.begin(2, "dataset 'x'", [3, 4])
    grad = torch.full((2, 2, module.weight.shape[1]), 3e38)  # finite, but their sum overflows
    sums.update(ScoreTile("up", slice(0, 2), grad, module.weight[:2].abs(), torch.tensor([True, True])))
    with pytest.raises(FloatingPointError, match=r"module up \(rows 0-1\), an overflow in the products of the batch's sample\(s\) \[3, 4\]"):
        sums.end()


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=needs_interpreter)])
def test_a_nan_input_stops_a_scoring_run_at_the_batch_end_naming_its_sample(fused, tiny_model):
    """End to end through the engine: a NaN embedding row reaches one sample's scores only (also
    through the fused kernel, engine/kernels.py, which never forms the per-sample values)."""
    from lit_activation.engine import EngineSettings, ScoreSum, stream_taylor_scores

    model = tiny_model()
    with torch.no_grad():
        model.model.embed_tokens.weight[50] = float("nan")
    ids = torch.tensor([[5, 6, 7, 8], [5, 50, 7, 8], [9, 10, 11, 12]])
    sums = ScoreSum(linear_modules(model))
    sums.begin(3, "dataset 'boolq'", [10, 11, 12])
    stream_taylor_scores(model, ids, torch.ones_like(ids), sums.update, EngineSettings(fused=fused))
    with pytest.raises(FloatingPointError, match=r"dataset 'boolq', module model\.layers\.1\..*sample\(s\) \[11\]"):
        sums.end()
