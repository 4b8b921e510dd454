"""The allocation classes against independent computations: OWL ratios, on-the-fly counts, α/i by hand."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_activation.cli.errors import one_line
from lit_activation.models.layers import decoder_layers, layer_map, linear_modules, weight_out_in
from lit_activation.models.tiny import tiny_tokenizer
from lit_activation.pruning.allocations import (
    OWL,
    Activation,
    AlphaPruning,
    CountsFile,
    GivenCounts,
    OnTheFlyCounts,
    Uniform,
    activation_layer_counts,
)
from lit_activation.pruning.allocations.owl import owl_outlier_ratios
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.sparsity import activation_sparsity
from tests.helpers.damage import damaged_json
from tests.helpers.naive import input_sums, naive_alpha_peak, naive_scores, paper_formula, per_layer
from tests.helpers.tolerant import gap_threshold, parts_of


def naive_outlier_ratios(model, calibration: torch.Tensor, m: float, batch_size: int) -> tuple[list[float], list[int]]:
    """Per layer: the fraction of Wanda scores above m × their mean, from one plain dense forward
    with hooks and numpy; and how many scores sit within 1e-5 of the threshold (ties to rounding)."""
    modules = linear_modules(model)
    sums = {name: s.numpy() for name, s in input_sums(model, modules, calibration, batch_size, lambda x: x.pow(2).sum(0)).items()}
    layer_of, _, n_layers = layer_map(model)
    ratios, near = [], []
    for layer in range(n_layers):
        scores = np.concatenate([
            (np.abs(weight_out_in(m_).double().numpy()) * np.sqrt(sums[n])[None, :]).ravel()
            for n, m_ in modules.items() if layer_of[n] == layer
        ])
        threshold = m * scores.mean()
        ratios.append(float((scores > threshold).mean()))
        near.append(int((np.abs(scores - threshold) <= 1e-5 * threshold).sum()))
    return ratios, near


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_owl_ratios_equal_an_independent_computation(arch, tiny_model):
    model = tiny_model(arch, layers=3)
    calibration = torch.randint(4, 100, (6, 24), generator=torch.Generator().manual_seed(1))
    got = owl_outlier_ratios(model, calibration, m=3.0, batch_size=2)
    expected, near = naive_outlier_ratios(model, calibration, 3.0, 2)
    for layer, (g, e, k) in enumerate(zip(got, expected, near, strict=True)):
        size = sum(m_.weight.numel() for n, m_ in linear_modules(model).items() if f".{layer}." in n)
        assert abs(g - e) * size <= k, f"layer {layer}: {g} vs {e} ({k} scores at the threshold)"
    assert len(set(expected)) > 1  # the layers differ, so a mix-up of layers would show


def test_owl_allocation_uses_those_ratios(tiny_model):
    model = tiny_model("llama", layers=3)
    calibration = torch.randint(4, 100, (4, 16), generator=torch.Generator().manual_seed(2))
    context = PruningContext(model, tiny_tokenizer(), calibration, "c4", None, 2)
    got = OWL(m=3.0, lam=0.05).layer_sparsity(0.5, context)
    ratios, near = naive_outlier_ratios(model, calibration, 3.0, 2)
    assert near == [0, 0, 0]  # precondition: no score sits at a threshold, so both computations count alike
    # by hand: min-max scaled to [0, 2·lam], centred; more outliers -> lower sparsity
    lo, hi = min(ratios), max(ratios)
    scaled = [(r - lo) / (hi - lo) * 0.1 for r in ratios]
    expected = [0.5 - (s - sum(scaled) / 3) for s in scaled]
    assert got == pytest.approx(expected, abs=1e-9)
    assert Uniform().layer_sparsity(0.5, context) == [0.5, 0.5, 0.5]


def test_on_the_fly_counts_equal_the_naive_loop(tiny_model):
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    rows = [torch.randint(4, 100, (n,), generator=g).tolist() for n in (12, 9, 15, 7, 11)]  # uneven: padded batches
    per = [naive_scores(model, torch.tensor(r)) for r in rows]
    means = {n: torch.stack([p[n] for p in per]).mean(0) for n in per[0]}
    gamma = gap_threshold(parts_of(means), 0.7)
    layer_of, _, n_layers = layer_map(model)
    expected = [int((v > gamma).sum()) for v in per_layer(means, layer_of, n_layers)]
    assert activation_layer_counts(model, rows, gamma, batch_size=2) == expected
    assert len(set(expected)) > 1 and all(c > 0 for c in expected)


def test_alpha_over_i_protects_the_first_layers_by_hand():
    # Equal counts: z = 0, so N'_i = sigmoid(α / i) alone: sigmoid(2), sigmoid(1), sigmoid(2/3), sigmoid(1/2).
    n_prime = [1 / (1 + math.exp(-2 / i)) for i in (1, 2, 3, 4)]
    assert n_prime == pytest.approx([0.880797, 0.731059, 0.660756, 0.622459], abs=1e-6)
    total = sum(n_prime)  # 2.895071
    expected = [0.4 + 0.2 * 0.4 * (1 - p * 4 / total) for p in n_prime]
    assert expected == pytest.approx([0.382643, 0.399194, 0.406965, 0.411198], abs=1e-6)
    got = activation_sparsity([5, 5, 5, 5], 0.4, alpha=2.0, beta=0.2)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[0] < got[1] < got[2] < got[3]  # +α/i: the first layer is pruned least
    flipped = activation_sparsity([5, 5, 5, 5], 0.4, alpha=-2.0, beta=0.2)
    assert flipped[0] > flipped[3]  # the sign of α decides which end is spared


def test_activation_allocation_records_its_counts(tiny_model):
    model = tiny_model()
    context = PruningContext(model, tiny_tokenizer(), torch.zeros((1, 4), dtype=torch.long), "c4", None, 1)
    allocation = Activation(GivenCounts([10, 1000]), alpha=1.0, beta=0.3)  # not the defaults: both must reach the formula
    assert allocation.layer_sparsity(0.5, context) == pytest.approx(paper_formula([10, 1000], 0.5, alpha=1.0, beta=0.3), abs=1e-12)
    assert paper_formula([10, 1000], 0.5, alpha=1.0, beta=0.3) != pytest.approx(paper_formula([10, 1000], 0.5), abs=1e-3)
    assert allocation.describe()["layer_counts"] == [10.0, 1000.0]
    with pytest.raises(ValueError, match="GivenCounts has 3 counts; 'tiny-llama' has 2 decoder layers"):
        Activation(GivenCounts([1, 2, 3])).check("tiny-llama", 2)
    Activation(GivenCounts([0, 1])).check("tiny-llama", 2)  # a zero beside a count is a count
    for counts, message in (([1, float("inf")], "layer 1's count is inf"), ([-1, 3], "layer 0's count is -1")):
        with pytest.raises(ValueError, match=f"^GivenCounts: {message}"):
            Activation(GivenCounts(counts)).check("tiny-llama", 2)


def test_counts_file_checks_name_the_file(tmp_path, tiny_model):
    path = tmp_path / "counts.json"
    path.write_text(json.dumps({"model": "smollm2-135m", "datasets": {"c4": {"layer_counts": [1, 2], "quantile_counts": {"q0.9": {"layer_counts": [3, 4]}}}}}))
    CountsFile(str(path), "c4", "q0.9", model="smollm2-135m").check("local/smollm2", 2)  # same model, another name: allowed
    with pytest.raises(ValueError) as unknown:
        CountsFile(str(path), "c44").check("smollm2-135m", 2)
    assert one_line(unknown.value) == f"Unknown dataset 'c44' in counts file '{path}'; did you mean 'c4'? accepted: ['c4']"
    with pytest.raises(ValueError) as unknown:
        CountsFile(str(path), key="q0.95").check("smollm2-135m", 2)
    assert one_line(unknown.value) == f"Unknown key 'q0.95' in counts file '{path}'; did you mean 'q0.9'? accepted: ['gamma', 'q0.9']"
    with pytest.raises(FileNotFoundError, match="counts file 'nope.json' does not exist"):
        CountsFile("nope.json").check("smollm2-135m", 2)
    with pytest.raises(ValueError, match="OnTheFlyCounts needs gamma >= 0"):
        OnTheFlyCounts(gamma=-1)
    assert decoder_layers(tiny_model())[0] == "model.layers"


def test_alphapruning_allocation_equals_numpy_spectra_and_the_mapping_by_hand(tiny_model):
    """Per block: Σ over its linears of the Hill α of the eigenvalues of WᵀW (numpy's SVD here),
    mapped onto [1 − ε, 1 + ε], scaled to the parameter-weighted target."""
    model = tiny_model("llama", layers=3)
    prefix, layers = decoder_layers(model)
    metrics, sizes = [], []
    for index in range(3):
        total, params = 0.0, 0
        for name, module in linear_modules(model).items():
            if name.startswith(f"{prefix}.{index}."):
                eig = np.sort(np.linalg.svd(weight_out_in(module).double().numpy(), compute_uv=False) ** 2)
                tail = eig[len(eig) // 2 :]
                total += 1 + len(tail) / np.log(tail / tail[0]).sum()
                params += module.weight.numel()
        metrics.append(total)
        sizes.append(params)
    assert len({round(m, 6) for m in metrics}) == 3  # precondition: the blocks' spectra differ
    ratios = [0.8 + 0.4 * (m - min(metrics)) / (max(metrics) - min(metrics)) for m in metrics]  # [1 − ε, 1 + ε], ε = 0.2
    expected = [r * 0.5 * sum(sizes) / sum(p * q for p, q in zip(sizes, ratios, strict=True)) for r in ratios]
    allocation = AlphaPruning(epsilon=0.2)  # not the default 0.3: the option must reach the mapping
    context = PruningContext(model, None, torch.zeros(1, 2, dtype=torch.long), "c4", None, 1)
    assert allocation.layer_sparsity(0.5, context) == pytest.approx(expected, rel=1e-5)  # fp32 SVD against fp64
    assert allocation.block_alphas == pytest.approx(metrics, rel=1e-5)
    assert allocation.describe()["method"] == "alphapruning"
    with pytest.raises(ValueError, match="epsilon must be in \\[0, 1\\)"):
        AlphaPruning(epsilon=1.5)


def test_alphapruning_with_xmin_peak_equals_numpy_spectra_and_the_reference_s_fit(tiny_model):
    """xmin: peak (AlphaPruning's LLaMA scripts): each weight's α from numpy's SVD and the reference's
    peak fit written out with numpy (tests/helpers/naive.py), summed per block, mapped as with mid."""
    model = tiny_model("llama", layers=3)
    prefix, _ = decoder_layers(model)
    metrics, sizes = [], []
    for index in range(3):
        modules = {n: m for n, m in linear_modules(model).items() if n.startswith(f"{prefix}.{index}.")}
        metrics.append(sum(naive_alpha_peak(np.linalg.svd(weight_out_in(m).double().numpy(), compute_uv=False) ** 2) for m in modules.values()))
        sizes.append(sum(m.weight.numel() for m in modules.values()))
    ratios = [0.7 + 0.6 * (m - min(metrics)) / (max(metrics) - min(metrics)) for m in metrics]  # ε = 0.3
    expected = [r * 0.5 * sum(sizes) / sum(p * q for p, q in zip(sizes, ratios, strict=True)) for r in ratios]
    allocation = AlphaPruning(xmin="peak")
    context = PruningContext(model, None, torch.zeros(1, 2, dtype=torch.long), "c4", None, 1)
    assert allocation.layer_sparsity(0.5, context) == pytest.approx(expected, rel=1e-5)  # fp32 SVD against fp64
    assert allocation.block_alphas == pytest.approx(metrics, rel=1e-5)
    assert allocation.describe() == {"method": "alphapruning", "epsilon": 0.3, "xmin": "peak", "block_alphas": allocation.block_alphas}
    mid = AlphaPruning(xmin="mid")
    mid.layer_sparsity(0.5, context)
    assert mid.block_alphas != pytest.approx(metrics, rel=1e-3)  # the option reaches the fit
    with pytest.raises(ValueError, match="^AlphaPruning xmin 'median' is not supported; accepted: 'mid', 'peak'$"):
        AlphaPruning(xmin="median")
    with pytest.raises(ValueError, match="lower the target sparsity or epsilon"):
        AlphaPruning(epsilon=0.9, xmin="peak").layer_sparsity(0.9, context)


@pytest.mark.parametrize(
    ("build", "accepted"),
    [
        (lambda: Activation(GivenCounts([1, 2]), beta=0.0), True), (lambda: Activation(GivenCounts([1, 2]), beta=-1e-9), False),
        (lambda: OWL(m=1e-9), True), (lambda: OWL(m=0.0), False), (lambda: OWL(lam=0.0), True), (lambda: OWL(lam=-1e-9), False),
        (lambda: AlphaPruning(epsilon=0.0), True), (lambda: AlphaPruning(epsilon=0.999), True), (lambda: AlphaPruning(epsilon=1.0), False),
        (lambda: AlphaPruning(epsilon=-1e-9), False),
        (lambda: OnTheFlyCounts(gamma=0.0, samples=1, length=2, batch_size=1), True), (lambda: OnTheFlyCounts(samples=0), False),
        (lambda: OnTheFlyCounts(length=1), False), (lambda: OnTheFlyCounts(batch_size=0), False),
    ],
)
def test_allocation_options_at_and_just_past_their_bounds(build, accepted):
    if accepted:
        build()
    else:
        with pytest.raises(ValueError, match="must be|needs"):
            build()


def test_owl_outliers_are_strictly_above_m_times_the_mean_and_a_zero_target_stays_zero():
    from lit_activation.pruning.sparsity import outlier_ratio, owl_from_ratios

    assert outlier_ratio(torch.tensor([0.0, 0.0, 0.0, 1.0]), m=4.0) == 0.0  # 1.0 is exactly 4 × the mean 0.25: no outlier
    assert outlier_ratio(torch.tensor([0.0, 0.0, 0.0, 1.0]), m=3.999) == 0.25
    assert owl_from_ratios([0.1, 0.1], 0.0) == [0.0, 0.0] and activation_sparsity([1.0, 2.0], 0.0) == [0.0, 0.0]


def test_equal_counts_are_valid_and_warned_about(caplog, tiny_model):
    """All 0 (a threshold above every score) is a valid outcome: α/i alone decides, and the log says so."""
    context = PruningContext(tiny_model(), tiny_tokenizer(), torch.zeros((1, 4), dtype=torch.long), "c4", None, 1)
    allocation = Activation(GivenCounts([0, 0]))
    allocation.check("tiny-llama", 2)
    with caplog.at_level("WARNING"):
        got = allocation.layer_sparsity(0.5, context)
    assert got == pytest.approx(activation_sparsity([5, 5], 0.5)) and got[0] < got[1]
    assert any("Every layer's activated count is 0" in r.getMessage() for r in caplog.records)
    caplog.clear()
    Activation(GivenCounts([1, 2])).layer_sparsity(0.5, context)
    assert not caplog.records



@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_damaged_counts_file_is_used_whole_or_named(data):
    """Hypothesis: a counts.json cut short, of random bytes, another encoding, a field out or of another
    kind: the allocation reads it, or refuses it in one line that names it."""
    valid = {"model": "m", "gamma": 2e-5, "datasets": {"c4": {"layer_counts": [1, 2], "quantile_counts": {"q0.9": {"layer_counts": [3, 4]}}}}}
    damaged = data.draw(damaged_json(valid))
    key = data.draw(st.sampled_from(["gamma", "q0.9"]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "counts.json"
        path.write_bytes(damaged)
        try:
            CountsFile(str(path), key=key).check("m", 2)
        except (ValueError, FileNotFoundError) as err:
            line = one_line(err)
            assert str(path) in line and "\n" not in line, line
        else:
            assert all(isinstance(c, (int, float)) for c in CountsFile(str(path), key=key).layer_counts(None))


def test_on_the_fly_counts_check_their_own_text_before_any_model_loads(tmp_path):
    (tmp_path / "c4.jsonl").write_text('{"text": "a"}\n{"text": "b')
    with pytest.raises(ValueError, match=r"c4.jsonl: is cut short: its last line \(2\) stops in the middle of a record"):
        Activation(OnTheFlyCounts(dataset="c4", files=str(tmp_path / "c4.jsonl"))).check("tiny-llama", 2)
    Activation(OnTheFlyCounts()).check("tiny-llama", 2)  # the calibration set's text: checked as its batch is built
