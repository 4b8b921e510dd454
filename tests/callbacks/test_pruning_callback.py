"""Pruning + perplexity through Lightning, saving and reloading the pruned model."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from transformers import AutoModelForCausalLM

from lit_activation.callbacks.pruning import Pruning
from lit_activation.data.perplexity import PerplexityDataModule, chunk_stream
from lit_activation.data.samples import evaluation_stream
from lit_activation.models.layers import decoder_layers, layer_index, linear_modules
from lit_activation.models.tiny import tiny_tokenizer
from lit_activation.module import ActivationModule
from lit_activation.pruning.allocations import OWL, Activation, CountsFile, OnTheFlyCounts
from lit_activation.pruning.context import Calibration


def validate(tmp_path, files, callbacks=(), seqlen=64, version=None) -> tuple[dict, ActivationModule, PerplexityDataModule]:
    module = ActivationModule(model="tiny-llama")
    dm = PerplexityDataModule("wikitext2", seqlen=seqlen, max_chunks=6, batch_size=4, data_files=files["wikitext2"])
    trainer = Trainer(
        accelerator="cpu", devices=1, inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t", version=version),
        callbacks=list(callbacks), enable_progress_bar=False, enable_model_summary=False,
    )
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    return metrics, module, dm


def naive_perplexity(model: torch.nn.Module, chunks: torch.Tensor) -> float:
    """exp of the mean next-token NLL over every chunk: one chunk per plain forward, F.cross_entropy, float64 sums."""
    total, count = 0.0, 0
    with torch.no_grad():
        for chunk in chunks:
            logits = model(input_ids=chunk[None]).logits[0]
            total += float(F.cross_entropy(logits[:-1].double(), chunk[1:], reduction="sum"))
            count += len(chunk) - 1
    return math.exp(total / count)


def evaluation_chunks(files, seqlen: int = 64, max_chunks: int = 6) -> torch.Tensor:
    return chunk_stream(evaluation_stream("wikitext2", tiny_tokenizer(), files["wikitext2"]), seqlen, max_chunks)


def test_perplexity_is_exp_mean_token_nll(tmp_path, bench_files, tiny_model):
    metrics, _, dm = validate(tmp_path, bench_files)
    assert dm.metric_name == "ppl/wikitext2/files/seqlen64/first6"
    chunks = evaluation_chunks(bench_files)
    assert chunks.shape == (6, 64)
    assert metrics[dm.metric_name] == pytest.approx(naive_perplexity(tiny_model(), chunks), rel=1e-5)


def test_chunks_do_not_overlap_and_drop_the_remainder():
    stream = torch.arange(10)
    assert chunk_stream(stream, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="fewer than one chunk of seqlen=16"):
        chunk_stream(stream, 16)


def calibration(files, samples: int = 4) -> Calibration:
    return Calibration("c4", samples=samples, seqlen=32, files=files["c4"])


def test_pruning_callback_records_and_saves(tmp_path, bench_files, tiny_model):
    save = tmp_path / "pruned"
    callback = Pruning(
        sparsity=0.5, allocation=Activation(OnTheFlyCounts(gamma=1e-3, samples=4, length=32)),
        calibration=calibration(bench_files), save_dir=str(save),
    )
    metrics, module, dm = validate(tmp_path, bench_files, [callback])
    record = json.loads((tmp_path / "t" / "version_0" / "pruning.json").read_text())
    # pruning only zeroes weights: every row of a module of layer l loses exactly ⌊in · s_l⌋ of them, the rest keep their values
    prefix, _ = decoder_layers(module.model)
    rebuilt = tiny_model()  # the dense weights, masked below where the pruned model has zeros
    masked = linear_modules(rebuilt)
    for name, m in linear_modules(module.model).items():
        zeros = (m.weight == 0).sum(dim=1)
        assert (zeros == int(m.weight.shape[1] * record["layer_sparsity"][layer_index(name, prefix)])).all() and zeros.min() > 0, name
        assert torch.equal(m.weight, torch.where(m.weight == 0, 0.0, masked[name].weight)), name
        with torch.no_grad():
            masked[name].weight[m.weight == 0] = 0.0
    # the logged perplexity is the pruned weights' perplexity (the dense model's differs by far more than the tolerance)
    chunks = evaluation_chunks(bench_files)
    expected = naive_perplexity(rebuilt, chunks)
    assert metrics[dm.metric_name] == pytest.approx(expected, rel=1e-5)
    assert abs(math.log(expected / naive_perplexity(tiny_model(), chunks))) > 1e-3
    assert record["method"] == "activation" and record["calibration"]["dataset"] == "c4" and record["calibration"]["seqlen"] == 32
    assert record["allocation"]["counts"]["source"] == "OnTheFlyCounts" and len(record["allocation"]["layer_counts"]) == 2
    assert len(record["layer_sparsity"]) == 2 and sum(record["layer_sparsity"]) / 2 == pytest.approx(0.5)
    # every row of a module of layer l loses ⌊in · s_l⌋ weights: the exact pruned fraction
    shapes = [(layer_index(n, prefix), *m.weight.shape) for n, m in linear_modules(module.model).items()]
    pruned = sum(int(fan_in * record["layer_sparsity"][layer]) * out for layer, out, fan_in in shapes)
    assert record["achieved_sparsity"] == pytest.approx(pruned / sum(out * fan_in for _, out, fan_in in shapes), rel=1e-6)
    assert (tmp_path / "t" / "version_0" / "sparsity.png").is_file()
    # reload with plain transformers: same zeros, same outputs
    reloaded = AutoModelForCausalLM.from_pretrained(save)
    for a, b in zip(linear_modules(module.model).values(), linear_modules(reloaded).values(), strict=True):
        assert torch.equal(a.weight == 0, b.weight == 0) and torch.equal(a.weight, b.weight)
    ids = torch.randint(4, 100, (1, 12))
    torch.testing.assert_close(reloaded(ids).logits, module.model(ids).logits)
    assert json.loads((save / "pruning.json").read_text())["achieved_sparsity"] == record["achieved_sparsity"]
    with pytest.raises(FileExistsError, match="never overwritten"):
        Pruning(save_dir=str(save))


def test_owl_and_two_of_four_through_the_callback(tmp_path, bench_files, tiny_model):
    validate(tmp_path / "owl", bench_files, [Pruning(sparsity=0.6, allocation=OWL(), calibration=calibration(bench_files))])
    record = json.loads((tmp_path / "owl" / "t" / "version_0" / "pruning.json").read_text())
    assert record["allocation"] == {"method": "owl", "m": 5.0, "lam": 0.08}
    assert sum(record["layer_sparsity"]) / 2 == pytest.approx(0.6)
    assert all(bool((m.weight != 0).all()) for m in linear_modules(tiny_model()).values())  # dense: no zeros before
    _, module, _ = validate(tmp_path / "nm", bench_files, [Pruning(sparsity=0.5, nm="2:4", calibration=calibration(bench_files))])
    for m in linear_modules(module.model).values():
        assert ((m.weight == 0).view(m.weight.shape[0], -1, 4).sum(-1) == 2).all()


def counts_file(tmp_path, model: str = "tiny-llama", counts=(10, 1000)) -> str:
    path = tmp_path / "counts.json"
    path.write_text(json.dumps({"model": model, "datasets": {"news": {"layer_counts": list(counts), "quantile_counts": {}}}}))
    return str(path)


def test_counts_file_drives_the_activation_allocation(tmp_path, bench_files):
    allocation = Activation(CountsFile(counts_file(tmp_path), dataset="news"))
    validate(tmp_path, bench_files, [Pruning(sparsity=0.5, allocation=allocation, calibration=calibration(bench_files))])
    record = json.loads((tmp_path / "t" / "version_0" / "pruning.json").read_text())
    assert record["allocation"]["layer_counts"] == [10, 1000] and record["layer_sparsity"][1] < record["layer_sparsity"][0]


@pytest.mark.parametrize(
    ("file_model", "counts", "message"),
    [
        ("tiny-gpt2", (10, 1000), r"holds counts of model 'tiny-gpt2'; this run prunes 'tiny-llama'"),
        ("tiny-llama", (10, 1000, 5), r"has counts for 3 layers; 'tiny-llama' has 2"),
        ("tiny-llama", (float("nan"), 1000), r"\(gamma\): layer 0's count is nan; counts of activated parameters are finite numbers >= 0"),
        ("tiny-llama", (1000, -5), r"\(gamma\): layer 1's count is -5; counts of activated parameters are finite"),
    ],
)
def test_a_counts_file_of_another_model_stops_before_loading(tmp_path, bench_files, monkeypatch, file_model, counts, message):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the counts file was checked")

    monkeypatch.setattr("lit_activation.module.load_causal_lm", no_loading)
    path = counts_file(tmp_path, file_model, counts)
    callback = Pruning(sparsity=0.5, allocation=Activation(CountsFile(path)), calibration=calibration(bench_files))
    with pytest.raises(ValueError, match=f"counts file '{path}' " + message):
        validate(tmp_path, bench_files, [callback])


def test_bad_pruning_arguments_are_clear(bench_files):
    with pytest.raises(ValueError, match=r"Sparsity 1.2 is outside \[0, 1\)"):
        Pruning(sparsity=1.2)
    with pytest.raises(ValueError, match="sparsity 0.6 was asked"):
        Pruning(sparsity=0.6, nm="2:4")
    with pytest.raises(ValueError, match="nm 'two:four' is not N:M; accepted: e.g. '2:4'"):
        Pruning(sparsity=0.5, nm="two:four")
    with pytest.raises(ValueError, match="allocation must be Uniform, got OWL"):
        Pruning(sparsity=0.5, nm="2:4", allocation=OWL())
    with pytest.raises(ValueError, match=r"metric 'obs' is not a pruning metric; accepted: Wanda, Magnitude, Taylor, GBLM, SparseGPT"):
        Pruning(metric="obs")
    with pytest.raises(ValueError, match="Unknown dataset 'c5'"):
        Calibration("c5")
    with pytest.raises(ValueError, match="calibration needs samples >= 1"):
        Calibration("c4", samples=0)
    with pytest.raises(ValueError, match="Perplexity needs running text"):
        PerplexityDataModule("boolq")


def test_existing_pruning_results_are_not_overwritten(tmp_path, bench_files):
    callback = lambda: Pruning(sparsity=0.5, calibration=calibration(bench_files, samples=2))  # noqa: E731
    validate(tmp_path, bench_files, [callback()], version=0)
    before = (tmp_path / "t" / "version_0" / "pruning.json").read_bytes()
    with pytest.raises(FileExistsError, match="pruning.json"):
        validate(tmp_path, bench_files, [callback()], version=0)
    assert (tmp_path / "t" / "version_0" / "pruning.json").read_bytes() == before


@pytest.mark.parametrize(("nm", "sparsity", "stops"), [("2:5", 0.4, True), ("2:4", 0.5, False), ("4:8", 0.5, False)])
def test_an_nm_pattern_that_does_not_divide_the_widths_stops_before_loading(tmp_path, bench_files, no_model_loading, nm, sparsity, stops):
    """tiny-llama's inputs are 32 (attention, gate/up) and 64 wide (down_proj): m = 4 and 8 divide both, 5 neither."""
    callback = Pruning(sparsity=sparsity, nm=nm, calibration=calibration(bench_files))
    expected = pytest.raises(ValueError, match=r"^N:M with m=5 needs input widths divisible by 5; model.layers.0.self_attn.q_proj takes 32 inputs \(14 of 14")
    with expected if stops else pytest.raises(no_model_loading):
        validate(tmp_path, bench_files, [callback])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_input_widths_of_the_fake_model_are_the_loaded_model_s(arch, tiny_model):
    from lit_activation.models.architectures import input_widths, model_config

    model = tiny_model(arch)
    loaded = {name: (m.weight.shape[0] if type(m).__name__ == "Conv1D" else m.weight.shape[1]) for name, m in linear_modules(model).items()}
    assert input_widths(model_config(f"tiny-{arch}")) == loaded and len(set(loaded.values())) > 1
