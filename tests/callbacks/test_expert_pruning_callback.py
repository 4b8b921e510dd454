"""Whole experts removed inside a Lightning validate run: pruning.json, the saved model reloaded with plain
transformers, and the perplexity the run logs measured on the cut-down model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from transformers import AutoModelForCausalLM

from lit_activation.callbacks.pruning import Pruning
from lit_activation.data.perplexity import PerplexityDataModule
from lit_activation.models.tiny import tiny_model
from lit_activation.module import ActivationModule
from lit_activation.pruning.context import Calibration
from lit_activation.pruning.experts import ExpertPruning, Frequency, MoEShape
from tests.callbacks.test_pruning_callback import evaluation_chunks, naive_perplexity


@pytest.mark.slow
def test_experts_removed_in_a_validate_run_are_recorded_saved_and_evaluated(tmp_path, bench_files):
    save = tmp_path / "cut"
    calibration = Calibration("c4", samples=4, seqlen=32, files=bench_files["c4"])
    callback = Pruning(experts=ExpertPruning(0.5, Frequency()), calibration=calibration, save_dir=str(save))
    module = ActivationModule(model="tiny-mixtral", check_memory=False)  # the plan of an fp32 MoE evaluation is not what is tested here
    dm = PerplexityDataModule("wikitext2", seqlen=64, max_chunks=6, batch_size=4, data_files=bench_files["wikitext2"])
    trainer = Trainer(
        accelerator="cpu", devices=1, inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t"), callbacks=[callback],
        enable_progress_bar=False, enable_model_summary=False,
    )
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    record = json.loads((tmp_path / "t" / "version_0" / "pruning.json").read_text())
    experts = record["experts"]
    assert record["method"] == "experts" and record["target_sparsity"] == 0.0 and experts["score"] == {"score": "frequency"}
    assert (experts["experts_before"], experts["experts_after"], experts["moe_layers"]) == (4, 2, [0, 1])
    for layer, entry in experts["per_layer"].items():  # the two lowest frequencies went, ties to the lower index
        assert entry["removed"] == sorted(sorted(range(4), key=lambda e: (entry["scores"][e], e))[:2]), layer
        assert entry["kept"] == [e for e in range(4) if e not in entry["removed"]]
        assert sum(entry["routed_tokens"]) == 2 * 4 * 32 and entry["scores"] == pytest.approx([t / (4 * 32) for t in entry["routed_tokens"]])
    assert record["achieved_sparsity"] == 0.0  # no weight inside the kept experts is pruned
    reloaded = AutoModelForCausalLM.from_pretrained(save, attn_implementation="eager").eval()
    assert MoEShape.of(reloaded).experts == 2 and json.loads((save / "pruning.json").read_text())["experts"] == experts
    ids = torch.randint(4, 100, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, module.model(ids).logits)
    chunks = evaluation_chunks(bench_files)
    assert metrics[dm.metric_name] == pytest.approx(naive_perplexity(reloaded, chunks), rel=1e-5)  # the cut-down model's
    assert abs(math.log(naive_perplexity(reloaded, chunks) / naive_perplexity(tiny_model("mixtral"), chunks))) > 1e-3


def test_the_callback_refuses_a_removal_that_cannot_be_before_the_weights_load(tmp_path, bench_files, no_model_loading):
    """Lightning users who build the callback themselves get the same line as the command line's, before loading."""
    callback = Pruning(experts=ExpertPruning(0.75), calibration=Calibration("c4", samples=2, seqlen=16, files=bench_files["c4"]))
    dm = PerplexityDataModule("wikitext2", seqlen=64, max_chunks=2, batch_size=2, data_files=bench_files["wikitext2"])
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[callback], enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match=r"experts.ratio 0.75 keeps 1 of tiny-mixtral's 4 experts per MoE layer, fewer than the 2"):
        trainer.validate(ActivationModule(model="tiny-mixtral"), datamodule=dm, verbose=False)
    assert callback.record is None
