"""lm-eval zero-shot on the in-memory model, offline, against accuracy computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lit_activation.callbacks.pruning import Calibration, WandaPruning
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


def predictions(model, tokenizer, context: str, choices: list[str]) -> tuple[int, int]:
    """By hand, lm-eval's multiple-choice predictions: (arg-max log-likelihood, arg-max per byte).

    lm-eval scores each choice as the continuation " " + choice, and acc_norm divides by the length
    of the choice itself (the delimiter not counted).
    """
    ll = [loglikelihood(model, tokenizer, context, " " + c) for c in choices]
    norm = [v / len(c.encode()) for v, c in zip(ll, choices, strict=True)]
    for values in (ll, norm):  # an arg-max compared across two computations needs a margin far above rounding
        top, second = sorted(values, reverse=True)[:2]
        assert top - second > 1e-3, f"near-tied choices {values} for {context!r}"
    return max(range(len(ll)), key=ll.__getitem__), max(range(len(norm)), key=norm.__getitem__)


def test_piqa_accuracy_equals_hand_computed(bench_files):
    model, tok = tiny_model("llama"), tiny_tokenizer()
    got = zero_shot(model, tok, ["piqa"], bench_files, limit=8, batch_size=4)["piqa"]
    docs = [json.loads(line) for line in Path(bench_files["piqa"]).read_text().splitlines()][:8]
    assert all(len(d["sol1"]) != len(d["sol2"]) for d in docs)  # else acc_norm could not differ from acc
    preds = [predictions(model, tok, f"Question: {d['goal']}\nAnswer:", [d["sol1"], d["sol2"]]) for d in docs]
    # precondition: normalising changes some prediction, so acc_norm proves the normalisation
    assert any(p != n for p, n in preds)
    assert got["acc"] == pytest.approx(sum(p == d["label"] for (p, _), d in zip(preds, docs, strict=True)) / 8)
    assert got["acc_norm"] == pytest.approx(sum(n == d["label"] for (_, n), d in zip(preds, docs, strict=True)) / 8)


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match="Unknown zero-shot task 'arc'"):
        local_task("arc", "x.jsonl")


def test_callback_runs_lm_eval_on_the_pruned_model(tmp_path, bench_files):
    module = ActivationModule(model="tiny-llama")
    dm = PerplexityDataModule("wikitext2", seqlen=64, max_chunks=2, data_files=bench_files["wikitext2"])
    prune = WandaPruning(sparsity=0.6, calibration=Calibration("c4", samples=2, seqlen=32, files=bench_files["c4"]))
    files = {task: bench_files[task] for task in ("boolq", "hellaswag")}
    evaluate = ZeroShotEval(tasks=["boolq", "hellaswag"], data_files=files, limit=8, batch_size=4)
    trainer = Trainer(
        accelerator="cpu", inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t"),
        callbacks=[prune, evaluate], enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.validate(module, datamodule=dm, verbose=False)
    out = json.loads((tmp_path / "t" / "version_0" / "zeroshot.json").read_text())
    assert set(out["results"]) == {"boolq", "hellaswag"}
    # the same accuracies by hand on the model as the callbacks left it (pruned)
    tok = tiny_tokenizer()

    def accuracies(model) -> tuple[float, float, float]:
        """(boolq acc, hellaswag acc, hellaswag acc_norm) by hand on the first 8 documents."""
        boolq = [json.loads(line) for line in Path(bench_files["boolq"]).read_text().splitlines()][:8]
        hits = [predictions(model, tok, f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:", ["no", "yes"])[0] == int(d["answer"]) for d in boolq]
        docs = [json.loads(line) for line in Path(bench_files["hellaswag"]).read_text().splitlines()][:8]
        assert not any("[" in d["ctx"] + "".join(d["endings"]) or "  " in d["ctx"] for d in docs)  # lm-eval's cleaning is a no-op here
        preds = [predictions(model, tok, f"{d['activity_label']}: {d['ctx']}", d["endings"]) for d in docs]
        gold = [int(d["label"]) for d in docs]
        return sum(hits) / 8, sum(p == g for (p, _), g in zip(preds, gold, strict=True)) / 8, sum(n == g for (_, n), g in zip(preds, gold, strict=True)) / 8

    pruned = accuracies(module.model)
    # precondition: the dense model scores differently, so equality below shows which model lm-eval saw
    assert accuracies(tiny_model("llama")) != pruned
    got = out["results"]
    assert (got["boolq"]["acc"], got["hellaswag"]["acc"], got["hellaswag"]["acc_norm"]) == pytest.approx(pruned)
