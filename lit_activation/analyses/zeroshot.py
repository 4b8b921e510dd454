"""Zero-shot accuracy on the in-memory (pruned) model, two labelled protocols (docs/method.md §6).

`lm_eval` (default, `zero_shot`): lm-evaluation-harness. With a network, lm-eval's own tasks are used
by name. Offline, each task becomes a config dict with `dataset_path: json` and the user's local
file, written like lm-eval's task YAMLs (same prompts, choices and metrics), so the numbers mean the
same thing. lm-eval's `wikitext` reports word perplexity, which is not this project's perplexity:
use PerplexityDataModule for that.

`paper` (`paper_zero_shot`): the paper's own scorer. n seeded records per task, one forward each, and
the arg-max over the next-token logits of the answer-label tokens at the last position. Both
protocols read the same records (the benchmarks' own field layouts), so one data file serves both.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from lit_activation.data import prompts

ACC = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]
ACC_NORM = ACC + [{"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]

# Our task name -> lm-eval's registered name (used with a network).
LM_EVAL_NAMES = {"boolq": "boolq", "piqa": "piqa", "siqa": "social_iqa", "hellaswag": "hellaswag", "mmlu": "mmlu"}


def _clean_hellaswag(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def _hellaswag_docs(dataset: Any) -> Any:
    """lm-eval's HellaSwag preprocessing: activity label + context as query, cleaned endings."""

    def one(doc: dict) -> dict:
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize() if "ctx_a" in doc else doc["ctx"]
        return {
            "query": _clean_hellaswag(doc["activity_label"] + ": " + ctx),
            "choices": [_clean_hellaswag(e) for e in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(one)


# Field layouts of the real benchmarks (same as the registry's), prompts as lm-eval's YAMLs.
_TEMPLATES: dict[str, dict[str, Any]] = {
    "boolq": {
        "doc_to_text": "{{passage}}\nQuestion: {{question}}?\nAnswer:",
        "doc_to_choice": ["no", "yes"],
        "doc_to_target": "{{ 1 if answer else 0 }}",
        "metric_list": ACC,
    },
    "piqa": {"doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_choice": "{{[sol1, sol2]}}", "doc_to_target": "label", "metric_list": ACC_NORM},
    "siqa": {
        "doc_to_text": "Q: {{context}} {{question}}\nA:",
        "target_delimiter": " ",
        "doc_to_choice": "{{[answerA, answerB, answerC]}}",
        "doc_to_target": "{{ (label|int) - 1 }}",
        "metric_list": ACC,
    },
    "hellaswag": {
        "process_docs": _hellaswag_docs,
        "doc_to_text": "{{query}}",
        "doc_to_choice": "choices",
        "doc_to_target": "{{gold}}",
        "metric_list": ACC_NORM,
    },
    "mmlu": {
        "doc_to_text": "The following are multiple choice questions (with answers) about {{subject.replace('_', ' ')}}.\n\n"
        "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
        "doc_to_choice": ["A", "B", "C", "D"],
        "doc_to_target": "answer",
        "metric_list": ACC,
        "fewshot_split": "validation",  # demonstrations come from the same local file, never the scored doc
    },
}

DEFAULT_SHOTS = {"mmlu": 5}
TASKS = tuple(_TEMPLATES)
# The fields each local task's template above reads; HellaSwag also needs ctx, or ctx_a and ctx_b.
LM_EVAL_FIELDS = {
    "boolq": ("passage", "question", "answer"), "piqa": ("goal", "sol1", "sol2", "label"),
    "siqa": ("context", "question", "answerA", "answerB", "answerC", "label"), "hellaswag": ("activity_label", "endings", "label"),
    "mmlu": ("subject", "question", "choices", "answer"),
}


def check_local_task(name: str, data_file: str | list[str]) -> None:
    """Read a local task's file and check the fields lm-eval will read, before any model is loaded."""
    from lit_activation.data.registry import load_records  # imports `datasets` lazily

    first = load_records(name, data_file, fields=LM_EVAL_FIELDS[name])[0]
    if name == "hellaswag" and "ctx" not in first and not {"ctx_a", "ctx_b"} <= set(first):
        raise ValueError(f"Dataset 'hellaswag' (files {data_file}) lacks 'ctx' (or 'ctx_a' and 'ctx_b'); found {sorted(first)}")


def local_task(name: str, data_file: str | list[str]) -> dict[str, Any]:
    """An lm-eval task config reading `data_file` (JSON/JSONL in the benchmark's real field layout)."""
    if name not in _TEMPLATES:
        raise ValueError(f"Unknown zero-shot task {name!r}; accepted: {sorted(_TEMPLATES)}")
    return {
        "task": f"{name}_local",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"validation": data_file}},
        "output_type": "multiple_choice",
        "validation_split": "validation",
        **_TEMPLATES[name],
        "metadata": {"version": 1.0, "source": "lit-activation local task"},
    }


def longest_request(name: str, data_file: str | list[str], tokenizer: Any, num_fewshot: int, limit: int | None = None) -> int:
    """Tokens of the longest input lm-eval will give the model for a local task: its context and
    continuation, as lm-eval builds them (few-shot examples drawn with its default seed)."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.evaluator import DEFAULT_OTHER_SEED

    task = ConfigurableTask(config=local_task(name, data_file))
    task.set_config(key="num_fewshot", value=num_fewshot)
    task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)  # simple_evaluate's default fewshot_random_seed
    task.build_all_requests(limit=limit)

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    # lm-eval scores context + continuation without the last token, plus a BOS where the tokenizer adds one
    return max(tokens(context) + tokens(continuation) for context, continuation in (i.args[:2] for i in task.instances)) + 1


@functools.cache
def task_manager() -> Any:
    """lm-eval's index of its tasks, built once per process: building it reads every task's YAML (seconds),
    and simple_evaluate would build it again for each task of each run (a sweep evaluates many)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(metadata={})  # what simple_evaluate builds without model_args or metadata


def zero_shot(
    model: nn.Module,
    tokenizer: Any,
    tasks: list[str],
    data_files: dict[str, str | list[str]] | None = None,
    num_fewshot: dict[str, int] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
) -> dict[str, dict[str, float]]:
    """Run lm-eval on the model in memory; returns {task: {metric: value}} (acc, acc_norm, stderr)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    unknown = set(tasks) - set(_TEMPLATES)
    if unknown:
        raise ValueError(f"Unknown zero-shot tasks {sorted(unknown)}; accepted: {sorted(_TEMPLATES)}")
    shots = {**DEFAULT_SHOTS, **(num_fewshot or {})}
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    results: dict[str, dict[str, float]] = {}
    for name in tasks:  # one call per task: lm-eval takes one num_fewshot per call
        task: Any = local_task(name, data_files[name]) if data_files and name in data_files else LM_EVAL_NAMES[name]
        out = lm_eval.simple_evaluate(
            model=lm, tasks=[task], num_fewshot=shots.get(name, 0), limit=limit, log_samples=False, task_manager=task_manager(),
        )
        (metrics,) = [v for k, v in out["results"].items() if k.startswith(LM_EVAL_NAMES[name]) or k.startswith(name)][:1]
        results[name] = {k.split(",")[0] if k.endswith(",none") else k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    return results


# ---------------------------------------------------------------------------------------------
# The paper's own protocol: label-token logits at the last position (docs/method.md §6).

# Answer labels per task; the scored token is the last id of tokenizer(label).
PAPER_LABELS: dict[str, tuple[str, ...]] = {
    "boolq": ("no", "yes"),
    "piqa": ("0", "1"),
    "siqa": ("A", "B", "C"),
    "hellaswag": ("A", "B", "C", "D"),
    "mmlu": ("A", "B", "C", "D"),
}
# The fields each prompt and gold label read: the registry's (and lm-eval path's) record layout.
PAPER_FIELDS: dict[str, tuple[str, ...]] = {
    "boolq": ("passage", "question", "answer"),
    "piqa": ("goal", "sol1", "sol2", "label"),
    "siqa": ("context", "question", "answerA", "answerB", "answerC", "label"),
    "hellaswag": ("ctx", "endings", "label"),
    "mmlu": ("subject", "question", "choices", "answer"),
}
DEMONSTRATION_FIELDS = ("question", "choices", "answer")
MMLU_SHOTS = 5  # the paper's fixed demonstrations: the first 5 records of MMLU's auxiliary_train split
PAPER_N = 256


def _require(task: str, record: Mapping[str, Any], fields: Sequence[str], where: str) -> None:
    """One clear line naming the first missing field, the task and the record."""
    for name in fields:
        if name not in record or record[name] is None:
            raise ValueError(f"Task {task!r}: {where} lacks field {name!r}; the paper protocol reads {list(fields)}")


def _choices(task: str, record: Mapping[str, Any]) -> list[str]:
    """The answer options in label order; their count must match the task's labels."""
    options = {
        "piqa": lambda r: [r["sol1"], r["sol2"]],
        "siqa": lambda r: [r["answerA"], r["answerB"], r["answerC"]],
        "hellaswag": lambda r: list(r["endings"]),
        "mmlu": lambda r: list(r["choices"]),
    }[task](record)
    if len(options) != len(PAPER_LABELS[task]):
        raise ValueError(f"Task {task!r}: a record has {len(options)} choices, the paper protocol scores exactly {len(PAPER_LABELS[task])}")
    return [str(o) for o in options]


def paper_prompt(task: str, record: Mapping[str, Any], demonstrations: Sequence[Mapping[str, Any]] = ()) -> str:
    """The prompt the paper's scorer reads, ending in `Answer:` (docs/method.md §6).

    BoolQ, SIQA, HellaSwag and MMLU are the §7 formats (lit_activation.data.prompts); PIQA lists its
    options as `0.`/`1.`, the labels it is scored on. MMLU puts `demonstrations` (with their
    answers) after the header, each followed by a blank line, as in the standard 5-shot MMLU
    prompt; other tasks ignore them.
    """
    if task not in PAPER_LABELS:
        raise ValueError(f"Task {task!r} has no label scheme in the paper protocol; accepted: {sorted(PAPER_LABELS)}")
    if task != "boolq":
        _choices(task, record)  # a wrong number of options fails here, naming the task
    if task == "piqa":
        return f"{record['goal']}\n0. {record['sol1']}\n1. {record['sol2']}\nAnswer:"
    if task == "mmlu":
        for d in demonstrations:
            _choices(task, d)
        shots = "".join(f"{prompts.mmlu_question(d)} {PAPER_LABELS['mmlu'][paper_gold('mmlu', d)]}\n\n" for d in demonstrations)
        return f"{prompts.mmlu_header(str(record['subject']))}{shots}{prompts.mmlu_question(record)}"
    return getattr(prompts, task)(record)


def paper_gold(task: str, record: Mapping[str, Any]) -> int:
    """The index of the gold label in PAPER_LABELS[task], from the benchmark's own label field."""
    field = "answer" if task in ("boolq", "mmlu") else "label"
    value = record[field]
    try:
        if task == "boolq":  # a JSON bool; CSV files give the strings "True"/"False"
            gold = {"true": 1, "false": 0}.get(value.lower(), -1) if isinstance(value, str) else int(value)
        elif task == "siqa":  # "1".."3"
            gold = int(value) - 1
        elif task == "mmlu" and isinstance(value, str) and value in ("A", "B", "C", "D"):  # cais/mmlu has 0..3; a letter is accepted too
            gold = "ABCD".index(value)
        else:  # mmlu 0..3, piqa 0/1, hellaswag "0".."3"
            gold = int(value)
    except (TypeError, ValueError):
        gold = -1
    if not 0 <= gold < len(PAPER_LABELS[task]):
        raise ValueError(f"Task {task!r}: gold {field} {value!r} is not one of the {len(PAPER_LABELS[task])} choices")
    return gold


def seeded_sample(records: Sequence[Any], n: int, seed: int) -> list[int]:
    """Indices of min(n, len(records)) distinct records in seeded order (also when all are used).

    Every task is sampled, BoolQ included: the paper's code took BoolQ's first 256 items whatever the seed.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return random.Random(seed).sample(range(len(records)), min(n, len(records)))


def label_token_ids(tokenizer: Any, labels: Sequence[str]) -> list[int]:
    """The scored token of each label: the last id of tokenizer(label) (e.g. Llama's "▁A" after BOS)."""
    ids = [tokenizer(label)["input_ids"][-1] for label in labels]
    if len(set(ids)) != len(ids):
        raise ValueError(f"Labels {list(labels)} share a last token id ({ids}); the paper protocol cannot tell them apart with this tokenizer")
    return ids


def paper_items(
    task: str, records: Sequence[Mapping[str, Any]], n: int = PAPER_N, seed: int = 0, demonstrations: Sequence[Mapping[str, Any]] | None = None
) -> tuple[list[str], list[int]]:
    """(prompts, gold label indices) of the seeded sample; checks fields before any model runs."""
    if task not in PAPER_LABELS:
        raise ValueError(f"Task {task!r} has no label scheme in the paper protocol; accepted: {sorted(PAPER_LABELS)}")
    if not records:
        raise ValueError(f"Task {task!r}: no records")
    shots: Sequence[Mapping[str, Any]] = ()
    if task == "mmlu":
        if not demonstrations:
            raise ValueError(f"Task 'mmlu' in the paper protocol needs its {MMLU_SHOTS} fixed demonstrations (first records of MMLU's auxiliary_train split)")
        for i, demo in enumerate(demonstrations):
            _require(task, demo, DEMONSTRATION_FIELDS, f"demonstration {i}")
        shots = demonstrations
    chosen = seeded_sample(records, n, seed)
    for i in chosen:
        _require(task, records[i], PAPER_FIELDS[task], f"record {i}")
    gold = [paper_gold(task, records[i]) for i in chosen]  # first: a bad label is named here, not by a prompt format
    return [paper_prompt(task, records[i], shots) for i in chosen], gold


@contextmanager
def _last_position_only(head: nn.Module | None, last: torch.Tensor) -> Iterator[None]:
    """Feed the output head only each row's last real hidden state: logits [B, 1, V] instead of [B, T, V]."""
    if head is None:
        yield
        return

    def keep_last(module: nn.Module, args: tuple) -> tuple | None:
        hidden = args[0]
        if hidden.dim() != 3:  # not the [B, T, H] call this expects: leave it, the caller gathers
            return None
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return (hidden[rows, last.to(hidden.device)].unsqueeze(1), *args[1:])

    handle = head.register_forward_pre_hook(keep_last)
    try:
        yield
    finally:
        handle.remove()


def label_logits(model: nn.Module, tokenizer: Any, prompts: Sequence[str], token_ids: Sequence[int], batch_size: int = 8) -> torch.Tensor:
    """[len(prompts), len(token_ids)] fp32 next-token logits of the label tokens at each prompt's last position.

    Batched with right padding (causal attention: real positions never see the pads) and the last
    real position gathered; only one batch's [B, V] logits exist at a time.
    """
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # any id: pads are masked and come last
    wanted = torch.tensor(list(token_ids), device=device)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
    out = torch.empty(len(ids), len(token_ids), dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(ids[i]) for i in rows)
            batch = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros_like(batch)
            for j, i in enumerate(rows):
                batch[j, : len(ids[i])] = torch.tensor(ids[i])
                mask[j, : len(ids[i])] = 1
            last = (mask.sum(1) - 1).to(device)
            with torch.no_grad(), _last_position_only(model.get_output_embeddings(), last):
                logits = model(input_ids=batch.to(device), attention_mask=mask.to(device)).logits
            at_last = logits[:, -1] if logits.shape[1] == 1 else logits[torch.arange(len(rows), device=device), last]
            out[rows] = at_last[:, wanted].float().cpu()
    finally:
        model.train(was_training)
    return out


def paper_accuracy(model: nn.Module, tokenizer: Any, task: str, prompts: Sequence[str], gold: Sequence[int], batch_size: int = 8) -> float:
    """Fraction of prompts whose largest label-token logit is the gold label's (ties: the first label)."""
    scores = label_logits(model, tokenizer, prompts, label_token_ids(tokenizer, PAPER_LABELS[task]), batch_size)
    hits = int((scores.argmax(1) == torch.tensor(list(gold))).sum())
    return hits / len(gold)  # a Python division: the exact fraction a count by hand gives


def paper_zero_shot(
    model: nn.Module,
    tokenizer: Any,
    task: str,
    records: Sequence[Mapping[str, Any]],
    n: int = PAPER_N,
    seed: int = 0,
    demonstrations: Sequence[Mapping[str, Any]] | None = None,
    batch_size: int = 8,
) -> float:
    """The paper's zero-shot accuracy of `model` on `task` (docs/method.md §6), a float in [0, 1].

    Scores min(n, len(records)) records drawn with random.Random(seed), in the records' own field
    layout (the same files lm-eval reads). MMLU needs `demonstrations` (the paper's 5 fixed ones,
    with answers); other tasks ignore them.
    """
    prompts, gold = paper_items(task, records, n, seed, demonstrations)
    return paper_accuracy(model, tokenizer, task, prompts, gold, batch_size)
