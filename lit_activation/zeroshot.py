"""Zero-shot evaluation through lm-evaluation-harness on the in-memory (pruned) model (docs/method.md §6).

With a network, lm-eval's own tasks are used by name. Offline, each task becomes a config dict with
`dataset_path: json` and the user's local file, written like lm-eval's task YAMLs (same prompts,
choices and metrics), so the numbers mean the same thing. lm-eval's `wikitext` reports word
perplexity, which is not this project's perplexity: use PerplexityDataModule for that.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

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
        out = lm_eval.simple_evaluate(model=lm, tasks=[task], num_fewshot=shots.get(name, 0), limit=limit, log_samples=False)
        (metrics,) = [v for k, v in out["results"].items() if k.startswith(LM_EVAL_NAMES[name]) or k.startswith(name)][:1]
        results[name] = {k.split(",")[0] if k.endswith(",none") else k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    return results
