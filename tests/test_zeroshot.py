"""lm-eval zero-shot on the in-memory model, offline, against accuracy computed by hand."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lit_activation.callbacks.pruning import WandaPruning
from lit_activation.callbacks.zeroshot import ZeroShotEval
from lit_activation.data.perplexity import PerplexityDataModule
from lit_activation.module import ActivationModule
from lit_activation.tiny import tiny_model, tiny_tokenizer
from lit_activation.zeroshot import local_task, zero_shot


def loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    ctx, cont = tokenizer(context)["input_ids"], tokenizer(continuation)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), -1)
    return float(sum(logp[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


def test_piqa_accuracy_equals_hand_computed(bench_files):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    got = zero_shot(model, tok, ["piqa"], bench_files, limit=8, batch_size=4)["piqa"]
    docs = [json.loads(line) for line in open(bench_files["piqa"])][:8]
    correct = correct_norm = 0
    for d in docs:
        context = f"Question: {d['goal']}\nAnswer:"
        ll = [loglikelihood(model, tok, context, " " + s) for s in (d["sol1"], d["sol2"])]
        norm = [v / len(" " + s) for v, s in zip(ll, (d["sol1"], d["sol2"]), strict=True)]  # lm-eval: per byte
        # an arg-max compared across two computations needs a margin far above rounding
        assert abs(ll[0] - ll[1]) > 1e-3 and abs(norm[0] - norm[1]) > 1e-3
        correct += int(max(range(2), key=lambda i: ll[i]) == d["label"])
        correct_norm += int(max(range(2), key=lambda i: norm[i]) == d["label"])
    assert got["acc"] == pytest.approx(correct / 8)
    assert got["acc_norm"] == pytest.approx(correct_norm / 8)


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="Unknown zero-shot task 'arc'"):
        local_task("arc", "x.jsonl")


def test_callback_runs_lm_eval_on_the_pruned_model(tmp_path, bench_files):
    module = ActivationModule(model="tiny-llama")
    dm = PerplexityDataModule("wikitext2", seqlen=64, max_chunks=2, data_files=bench_files["wikitext2"])
    prune = WandaPruning(sparsity=0.5, calibration="c4", calibration_files=bench_files["c4"], calibration_samples=2, seqlen=32)
    evaluate = ZeroShotEval(tasks=["boolq", "hellaswag"], data_files=bench_files, limit=4, batch_size=4)
    trainer = Trainer(
        accelerator="cpu", inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t"),
        callbacks=[prune, evaluate], enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.validate(module, datamodule=dm, verbose=False)
    out = json.loads((tmp_path / "t" / "version_0" / "zeroshot.json").read_text())
    assert set(out["results"]) == {"boolq", "hellaswag"}
    assert 0.0 <= out["results"]["hellaswag"]["acc_norm"] <= 1.0
    # it scored the pruned model: the dense model's answers are not what was evaluated
    assert json.loads((tmp_path / "t" / "version_0" / "pruning.json").read_text())["achieved_sparsity"] > 0.45
