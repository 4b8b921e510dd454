"""lm-eval zero-shot on the in-memory model, offline, against accuracy computed by hand."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lit_activation.analyses.zeroshot import local_task, zero_shot
from lit_activation.callbacks.pruning import Pruning
from lit_activation.callbacks.zeroshot import ZeroShotEval
from lit_activation.data.perplexity import PerplexityDataModule
from lit_activation.models.tiny import tiny_tokenizer
from lit_activation.module import ActivationModule
from lit_activation.pruning.context import Calibration


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


@pytest.mark.slow
def test_piqa_accuracy_equals_hand_computed(bench_files, tiny_model):
    model, tok = tiny_model(), tiny_tokenizer()
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


@pytest.mark.slow
def test_callback_runs_lm_eval_on_the_pruned_model(tmp_path, bench_files, tiny_model):
    module = ActivationModule(model="tiny-llama")
    dm = PerplexityDataModule("wikitext2", seqlen=64, max_chunks=2, data_files=bench_files["wikitext2"])
    prune = Pruning(sparsity=0.6, calibration=Calibration("c4", samples=2, seqlen=32, files=bench_files["c4"]))
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
    assert accuracies(tiny_model()) != pruned
    got = out["results"]
    assert (got["boolq"]["acc"], got["hellaswag"]["acc"], got["hellaswag"]["acc_norm"]) == pytest.approx(pruned)


# ---------------------------------------------------------------------------------------------
# The paper's own protocol (docs/method.md §6): label-token logits at the last position.

PAPER_TASKS = ("boolq", "piqa", "siqa", "hellaswag", "mmlu")


def rows(bench_files, task: str) -> list[dict]:
    return [json.loads(line) for line in Path(bench_files[task]).read_text().splitlines()]


def hand_prompt(task: str, r: dict, demos: list[dict]) -> str:
    """The paper protocol's prompts, written out here independently of the library."""
    if task == "boolq":
        return f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:"
    if task == "piqa":
        return f"{r['goal']}\n0. {r['sol1']}\n1. {r['sol2']}\nAnswer:"
    if task == "siqa":
        return f"{r['context']}\nQuestion: {r['question']}\nA. {r['answerA']}\nB. {r['answerB']}\nC. {r['answerC']}\nAnswer:"
    if task == "hellaswag":
        e = r["endings"]
        return f"{r['ctx']}\nA. {e[0]}\nB. {e[1]}\nC. {e[2]}\nD. {e[3]}\nAnswer:"

    def question(d: dict) -> str:
        c = d["choices"]
        return f"{d['question']}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"

    shots = "".join(f"{question(d)} {'ABCD'[d['answer']]}\n\n" for d in demos)
    return f"The following are multiple choice questions (with answers) about {r['subject'].replace('_', ' ')}.\n\n{shots}{question(r)}"


def hand_gold(task: str, r: dict) -> int:
    return {"boolq": lambda: int(r["answer"]), "siqa": lambda: int(r["label"]) - 1, "mmlu": lambda: r["answer"]}.get(task, lambda: int(r["label"]))()


HAND_LABELS = {"boolq": ["no", "yes"], "piqa": ["0", "1"], "siqa": ["A", "B", "C"], "hellaswag": ["A", "B", "C", "D"], "mmlu": ["A", "B", "C", "D"]}


@pytest.mark.parametrize(("arch", "task"), [("llama", t) for t in PAPER_TASKS] + [("gpt2", "boolq")])
def test_paper_accuracy_equals_hand_computed_one_record_at_a_time(bench_files, arch, task, tiny_model):
    from lit_activation.analyses.zeroshot import label_logits, label_token_ids, paper_items, paper_zero_shot

    model, tok = tiny_model(arch), tiny_tokenizer()
    records = rows(bench_files, task)
    demos = records[:5] if task == "mmlu" else []
    n, seed = (6, 3) if task == "mmlu" else (12, 3)  # MMLU's 5-shot prompts are long for a character tokenizer
    chosen = [records[i] for i in random.Random(seed).sample(range(len(records)), n)]
    label_ids = [tok(label)["input_ids"][-1] for label in HAND_LABELS[task]]
    hand_logits, hits = [], 0
    for r in chosen:  # unbatched, unpadded: one forward per record
        with torch.no_grad():
            last = model(torch.tensor([tok(hand_prompt(task, r, demos))["input_ids"]])).logits[0, -1]
        scores = last[label_ids].float()
        top, second = scores.sort(descending=True).values[:2]
        assert top - second > 1e-3, f"near-tied label logits {scores.tolist()}"  # an arg-max compared across computations needs a margin
        hand_logits.append(scores)
        hits += int(scores.argmax()) == hand_gold(task, r)
    prompts, gold = paper_items(task, records, n, seed, demos or None)
    # preconditions: batches really are padded, and predictions are not all one label
    assert len({len(tok(p)["input_ids"]) for p in prompts[:4]}) > 1
    assert len({int(s.argmax()) for s in hand_logits}) > 1
    batched = label_logits(model, tok, prompts, label_token_ids(tok, HAND_LABELS[task]), batch_size=4)
    torch.testing.assert_close(batched, torch.stack(hand_logits), atol=1e-4, rtol=1e-4)
    assert gold == [hand_gold(task, r) for r in chosen]
    assert paper_zero_shot(model, tok, task, records, n=n, seed=seed, demonstrations=demos or None, batch_size=4) == hits / n


def test_paper_prompts_exactly():
    from lit_activation.analyses.zeroshot import paper_prompt
    from lit_activation.data import prompts

    boolq = {"passage": "Cats sleep a lot.", "question": "do cats sleep", "answer": True}
    piqa = {"goal": "Open a jar.", "sol1": "Twist the lid.", "sol2": "Kick the jar.", "label": 0}
    siqa = {"context": "Ann won.", "question": "How does Ann feel?", "answerA": "sad", "answerB": "happy", "answerC": "tired", "label": "2"}
    hellaswag = {"ctx": "He picks up the ball.", "endings": ["throws it", "eats it", "sings", "sleeps"], "label": "0", "activity_label": "Ball"}
    mmlu = {"question": "What is 2 + 2?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1}
    assert paper_prompt("boolq", boolq) == "Cats sleep a lot.\nQuestion: do cats sleep?\nAnswer:"
    assert paper_prompt("piqa", piqa) == "Open a jar.\n0. Twist the lid.\n1. Kick the jar.\nAnswer:"
    assert paper_prompt("siqa", siqa) == "Ann won.\nQuestion: How does Ann feel?\nA. sad\nB. happy\nC. tired\nAnswer:"
    assert paper_prompt("hellaswag", hellaswag) == "He picks up the ball.\nA. throws it\nB. eats it\nC. sings\nD. sleeps\nAnswer:"
    assert paper_prompt("mmlu", mmlu) == (
        "The following are multiple choice questions (with answers) about elementary mathematics.\n\nWhat is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    )
    # the same text as the §7 formats (calibration prompts), except PIQA whose options carry the scored labels 0/1
    for task, record in [("boolq", boolq), ("siqa", siqa), ("hellaswag", hellaswag), ("mmlu", mmlu)]:
        assert paper_prompt(task, record) == getattr(prompts, task)(record)


def test_mmlu_demonstrations_precede_the_question_in_order_with_answers():
    from lit_activation.analyses.zeroshot import paper_prompt

    demos = [{"question": f"Q{i}?", "subject": "", "choices": [f"a{i}", f"b{i}", f"c{i}", f"d{i}"], "answer": i % 4} for i in range(5)]
    record = {"question": "Last?", "subject": "world_history", "choices": ["w", "x", "y", "z"], "answer": 2}
    shots = "".join(f"Q{i}?\nA. a{i}\nB. b{i}\nC. c{i}\nD. d{i}\nAnswer: {'ABCD'[i % 4]}\n\n" for i in range(5))
    assert shots.startswith("Q0?\nA. a0\nB. b0\nC. c0\nD. d0\nAnswer: A\n\nQ1?")
    expected = f"The following are multiple choice questions (with answers) about world history.\n\n{shots}Last?\nA. w\nB. x\nC. y\nD. z\nAnswer:"
    assert paper_prompt("mmlu", record, demos) == expected


def test_mmlu_without_demonstrations_is_one_clear_error(bench_files, tiny_model):
    from lit_activation.analyses.zeroshot import paper_zero_shot

    with pytest.raises(ValueError, match=r"^Task 'mmlu' in the paper protocol needs its 5 fixed demonstrations[^\n]*$"):
        paper_zero_shot(tiny_model(), tiny_tokenizer(), "mmlu", rows(bench_files, "mmlu"), n=2)


def test_missing_field_names_field_and_task(bench_files):
    from lit_activation.analyses.zeroshot import paper_items

    records = [{k: v for k, v in r.items() if k != "sol2"} for r in rows(bench_files, "piqa")]
    with pytest.raises(ValueError, match=r"^Task 'piqa': record \d+ lacks field 'sol2'[^\n]*$"):
        paper_items("piqa", records, n=4)
    demos = [{"question": "Q?", "choices": ["a", "b", "c", "d"]}]
    with pytest.raises(ValueError, match=r"^Task 'mmlu': demonstration 0 lacks field 'answer'"):
        paper_items("mmlu", rows(bench_files, "mmlu"), n=4, demonstrations=demos)


def test_label_token_is_the_last_id_of_the_tokenized_label():
    from lit_activation.analyses.zeroshot import PAPER_LABELS, label_token_ids

    tok = tiny_tokenizer()
    assert tok("yes")["input_ids"] == tok.convert_tokens_to_ids(["y", "e", "s"])  # precondition: several ids per label
    assert label_token_ids(tok, PAPER_LABELS["boolq"]) == tok.convert_tokens_to_ids(["o", "s"])
    assert label_token_ids(tok, PAPER_LABELS["siqa"]) == tok.convert_tokens_to_ids(["A", "B", "C"])
    with pytest.raises(ValueError, match="share a last token id"):
        label_token_ids(tok, ["go", "no"])


@pytest.mark.parametrize("task", PAPER_TASKS)
def test_every_task_is_sampled_with_the_seed(bench_files, task):
    """BoolQ included: the paper's code took BoolQ's first 256 items whatever the seed."""
    from lit_activation.analyses.zeroshot import paper_items, paper_prompt

    records = rows(bench_files, task)
    demos = records[:5] if task == "mmlu" else None
    first = paper_items(task, records, 8, 0, demos)
    assert paper_items(task, records, 8, 0, demos) == first  # reproducible
    assert paper_items(task, records, 8, 1, demos) != first  # the seed matters
    in_file_order = paper_items(task, records[:8], 8, 0, demos)[0]
    assert first[0] != in_file_order  # not the first n records
    every = paper_items(task, records, 10_000, 0, demos)[0]  # n >= len: every record once, in seeded order
    in_order = [paper_prompt(task, r, demos or ()) for r in records]
    assert sorted(every) == sorted(in_order) and every != in_order
    assert every == [in_order[i] for i in random.Random(0).sample(range(len(records)), len(records))]


def test_paper_callback_options_are_checked_and_kept(tmp_path):
    evaluate = ZeroShotEval(tasks=["boolq", "mmlu"], protocol="paper", n=32, seed=7, demonstrations="demos.jsonl")
    assert evaluate.describe() == {"protocol": "paper", "tasks": ["boolq", "mmlu"], "n": 32, "seed": 7, "demonstrations": "demos.jsonl"}
    again = evaluate.fresh()
    assert again.describe() == evaluate.describe() and again.results is None
    assert ZeroShotEval(tasks=["boolq"]).describe()["protocol"] == "lm-evaluation-harness"  # the default, as before
    for kwargs, message in [
        ({"protocol": "papers"}, "Unknown zero-shot protocol 'papers'"),
        ({"protocol": "paper", "n": 0}, "n must be >= 1"),
        ({"protocol": "paper", "tasks": ["mmlu"]}, "protocol paper with mmlu needs demonstrations"),
        ({"protocol": "paper", "tasks": ["boolq"], "limit": 8}, "limit belongs to protocol lm_eval"),
        ({"protocol": "paper", "tasks": ["boolq"], "num_fewshot": {"boolq": 2}}, "num_fewshot belongs to protocol lm_eval"),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}[^\n]*$"):
            ZeroShotEval(**kwargs)


def test_paper_callback_records_the_protocol(tmp_path, bench_files, capsys):
    from lit_activation.analyses.zeroshot import paper_zero_shot

    module = ActivationModule(model="tiny-llama")
    dm = PerplexityDataModule("wikitext2", seqlen=32, max_chunks=1, data_files=bench_files["wikitext2"])
    files = {task: bench_files[task] for task in ("boolq", "mmlu")}
    evaluate = ZeroShotEval(tasks=["boolq", "mmlu"], data_files=files, protocol="paper", n=6, seed=2, demonstrations=bench_files["mmlu"], batch_size=4)
    trainer = Trainer(
        accelerator="cpu", inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t"),
        callbacks=[evaluate], enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.validate(module, datamodule=dm, verbose=False)
    out = json.loads((tmp_path / "t" / "version_0" / "zeroshot.json").read_text())
    assert {k: out[k] for k in ("protocol", "n", "seed")} == {"protocol": "paper", "n": 6, "seed": 2}
    tok = tiny_tokenizer()
    for task in ("boolq", "mmlu"):
        demos = rows(bench_files, "mmlu")[:5] if task == "mmlu" else None
        expected = paper_zero_shot(module.model, tok, task, rows(bench_files, task), n=6, seed=2, demonstrations=demos)
        assert out["results"][task] == {"acc": expected, "n": 6}
    assert "Zero-shot (paper protocol" in capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["lm_eval", "paper"])
@pytest.mark.parametrize("broken", [True, False])
def test_a_zero_shot_file_without_a_field_stops_before_the_model_loads(tmp_path, bench_files, no_model_loading, protocol, broken):
    """Found at setup, not after pruning and perplexity (whose figure would be lost with the run)."""
    records = [json.loads(line) for line in Path(bench_files["boolq"]).read_text().splitlines()]
    path = tmp_path / "boolq.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if not (broken and k == "passage")}) + "\n" for r in records))
    options = {"limit": 4} if protocol == "lm_eval" else {"n": 4}
    evaluate = ZeroShotEval(tasks=["boolq"], data_files={"boolq": str(path)}, protocol=protocol, **options)
    dm = PerplexityDataModule("wikitext2", seqlen=64, max_chunks=2, data_files=bench_files["wikitext2"])
    trainer = Trainer(accelerator="cpu", inference_mode=False, logger=False, callbacks=[evaluate], enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match=r"boolq.jsonl: line 1 lacks the field 'passage'") if broken else pytest.raises(no_model_loading):
        trainer.validate(ActivationModule(model="tiny-llama"), datamodule=dm, verbose=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: {**{k: v for k, v in r.items() if k != "ctx"}, "ctx_a": r["ctx"], "ctx_b": ""}, None),  # the hub's layout: accepted
        (lambda r: {k: v for k, v in r.items() if k != "activity_label"}, r"hellaswag.jsonl: line 1 lacks the field 'activity_label'"),
        (lambda r: {k: v for k, v in r.items() if k != "ctx"}, r"lacks 'ctx' \(or 'ctx_a' and 'ctx_b'\)"),
    ],
    ids=["ctx_a-ctx_b", "no-activity_label", "no-ctx"],
)
def test_a_local_hellaswag_file_is_checked_for_the_fields_lm_eval_reads(tmp_path, bench_files, no_model_loading, change, message):
    records = [change(json.loads(line)) for line in Path(bench_files["hellaswag"]).read_text().splitlines()]
    path = tmp_path / "hellaswag.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    evaluate = ZeroShotEval(tasks=["hellaswag"], data_files={"hellaswag": str(path)}, limit=4)
    dm = PerplexityDataModule("wikitext2", seqlen=64, max_chunks=2, data_files=bench_files["wikitext2"])
    trainer = Trainer(accelerator="cpu", inference_mode=False, logger=False, callbacks=[evaluate], enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match=message) if message else pytest.raises(no_model_loading):
        trainer.validate(ActivationModule(model="tiny-llama"), datamodule=dm, verbose=False)
