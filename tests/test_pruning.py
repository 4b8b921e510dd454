"""WandaPruning + perplexity through Lightning, saving and reloading the pruned model."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from transformers import AutoModelForCausalLM

from lit_activation.callbacks.pruning import WandaPruning
from lit_activation.data.perplexity import PerplexityDataModule, chunk_stream
from lit_activation.data.samples import evaluation_stream
from lit_activation.models import decoder_layers, layer_index, linear_modules
from lit_activation.module import ActivationModule
from lit_activation.tiny import tiny_model, tiny_tokenizer


def validate(tmp_path, files, callbacks=(), seqlen=64, version=None) -> tuple[dict, ActivationModule, PerplexityDataModule]:
    module = ActivationModule(model="tiny-llama")
    dm = PerplexityDataModule("wikitext2", seqlen=seqlen, max_chunks=6, batch_size=4, data_files=files["wikitext2"])
    trainer = Trainer(
        accelerator="cpu", devices=1, inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t", version=version),
        callbacks=list(callbacks), enable_progress_bar=False, enable_model_summary=False,
    )
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    return metrics, module, dm


def test_perplexity_is_exp_mean_token_nll(tmp_path, bench_files):
    metrics, _, dm = validate(tmp_path, bench_files)
    assert dm.metric_name == "ppl/wikitext2/files/seqlen64/first6"
    chunks = chunk_stream(evaluation_stream("wikitext2", tiny_tokenizer(), bench_files["wikitext2"]), 64, 6)
    model = tiny_model("llama")
    with torch.no_grad():
        logits = model(input_ids=chunks).logits
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), chunks[:, 1:].reshape(-1))
    assert metrics[dm.metric_name] == pytest.approx(math.exp(float(nll)), rel=1e-5)


def test_chunks_do_not_overlap_and_drop_the_remainder():
    stream = torch.arange(10)
    assert chunk_stream(stream, 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="fewer than one chunk of seqlen=16"):
        chunk_stream(stream, 16)


def test_pruning_callback_records_and_saves(tmp_path, bench_files):
    save = tmp_path / "pruned"
    callback = WandaPruning(
        sparsity=0.5, allocation="activation", calibration="c4", calibration_files=bench_files["c4"],
        calibration_samples=4, seqlen=32, gamma=1e-3, activation_samples=4, activation_length=32, save_dir=str(save),
    )
    dense_metrics, _, dm = validate(tmp_path / "dense", bench_files)
    metrics, module, _ = validate(tmp_path, bench_files, [callback])
    assert metrics[dm.metric_name] != dense_metrics[dm.metric_name]
    record = json.loads((tmp_path / "t" / "version_0" / "pruning.json").read_text())
    assert record["method"] == "activation" and record["calibration"] == "c4" and record["seqlen"] == 32
    assert len(record["layer_sparsity"]) == 2 and sum(record["layer_sparsity"]) / 2 == pytest.approx(0.5)
    # every row of a module of layer l loses ⌊in · s_l⌋ weights: the exact pruned fraction
    prefix, _ = decoder_layers(module.model)
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
        WandaPruning(save_dir=str(save))


def test_owl_and_two_of_four_through_the_callback(tmp_path, bench_files):
    common = dict(calibration="c4", calibration_files=bench_files["c4"], calibration_samples=4, seqlen=32)
    validate(tmp_path / "owl", bench_files, [WandaPruning(sparsity=0.6, allocation="owl", **common)])
    record = json.loads((tmp_path / "owl" / "t" / "version_0" / "pruning.json").read_text())
    assert sum(record["layer_sparsity"]) / 2 == pytest.approx(0.6)
    assert all(bool((m.weight != 0).all()) for m in linear_modules(tiny_model("llama")).values())  # dense: no zeros before
    _, module, _ = validate(tmp_path / "nm", bench_files, [WandaPruning(sparsity=0.5, n=2, m=4, **common)])
    for m in linear_modules(module.model).values():
        assert ((m.weight == 0).view(m.weight.shape[0], -1, 4).sum(-1) == 2).all()


def test_counts_file_drives_the_activation_allocation(tmp_path, bench_files):
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({"datasets": {"news": {"layer_counts": [10, 1000], "quantile_counts": {}}}}))
    common = dict(calibration="c4", calibration_files=bench_files["c4"], calibration_samples=4, seqlen=32)
    validate(tmp_path, bench_files, [WandaPruning(sparsity=0.5, allocation="activation", counts_file=str(counts), **common)])
    record = json.loads((tmp_path / "t" / "version_0" / "pruning.json").read_text())
    assert record["counts"] == [10, 1000] and record["layer_sparsity"][1] < record["layer_sparsity"][0]


def test_bad_pruning_arguments_are_clear():
    with pytest.raises(ValueError, match="Sparsity 1.2 is outside"):
        WandaPruning(sparsity=1.2)
    with pytest.raises(ValueError, match="sparsity 0.6 was asked"):
        WandaPruning(sparsity=0.6, n=2, m=4)
    with pytest.raises(ValueError, match="Unknown allocation 'best'"):
        WandaPruning(allocation="best")
    with pytest.raises(ValueError, match="must be 'uniform'"):
        WandaPruning(sparsity=0.5, n=2, m=4, allocation="owl")
    with pytest.raises(ValueError, match="Perplexity needs running text"):
        PerplexityDataModule("boolq")


def test_existing_pruning_results_are_not_overwritten(tmp_path, bench_files):
    common = dict(calibration="c4", calibration_files=bench_files["c4"], calibration_samples=2, seqlen=32)
    validate(tmp_path, bench_files, [WandaPruning(**common)], version=0)
    before = (tmp_path / "t" / "version_0" / "pruning.json").read_bytes()
    with pytest.raises(FileExistsError, match="pruning.json"):
        validate(tmp_path, bench_files, [WandaPruning(**common)], version=0)
    assert (tmp_path / "t" / "version_0" / "pruning.json").read_bytes() == before
