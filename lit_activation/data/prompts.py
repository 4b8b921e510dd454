"""Prompt formats of the paper's code (docs/method.md §7): one pure function per benchmark, record -> text.

With `with_answer=True` the gold answer follows "Answer:" (used to build calibration text, where
the paper joined MMLU examples *with* answers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

LETTERS = "ABCDEFGH"
Record = Mapping[str, Any]


def _options(choices: Sequence[str]) -> str:
    return "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def _answer(letter_index: int | None, with_answer: bool) -> str:
    return f" {LETTERS[letter_index]}" if with_answer and letter_index is not None else ""


def boolq(r: Record, with_answer: bool = False) -> str:
    """`{passage}\\nQuestion: {question}?\\nAnswer:` (BoolQ questions carry no question mark)."""
    answer = (" yes" if r["answer"] else " no") if with_answer and "answer" in r else ""
    return f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:{answer}"


def mmlu_header(subject: str) -> str:
    """The MMLU header naming the subject (underscores as spaces), then a blank line."""
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def mmlu_question(r: Record) -> str:
    """One MMLU question: the question, lettered choices, then `Answer:` (no header)."""
    return f"{r['question']}{_options(r['choices'])}\nAnswer:"


def mmlu(r: Record, with_answer: bool = False) -> str:
    """The MMLU header with the subject, the question, lettered choices, then `Answer:`."""
    return f"{mmlu_header(str(r.get('subject', '')))}{mmlu_question(r)}{_answer(r.get('answer'), with_answer)}"


def humaneval(r: Record, with_answer: bool = False) -> str:
    """The HumanEval prompt as is (with the canonical solution when `with_answer`)."""
    return r["prompt"] + (r.get("canonical_solution", "") if with_answer else "")


def gsm8k(r: Record, with_answer: bool = False) -> str:
    """The GSM8K question (and worked answer when `with_answer`)."""
    return r["question"] + (f"\nAnswer: {r['answer']}" if with_answer else "")


def siqa(r: Record, with_answer: bool = False) -> str:
    """Social IQa: context, question, options A-C, `Answer:`; labels are "1".."3"."""
    label = int(r["label"]) - 1 if r.get("label") not in (None, "") else None
    options = _options([r["answerA"], r["answerB"], r["answerC"]])
    return f"{r['context']}\nQuestion: {r['question']}{options}\nAnswer:{_answer(label, with_answer)}"


def piqa(r: Record, with_answer: bool = False) -> str:
    """PIQA: goal, options A-B, `Answer:`; label 0/1."""
    label = int(r["label"]) if r.get("label") not in (None, "", -1) else None
    return f"{r['goal']}{_options([r['sol1'], r['sol2']])}\nAnswer:{_answer(label, with_answer)}"


def hellaswag(r: Record, with_answer: bool = False) -> str:
    """HellaSwag: context, endings A-D, `Answer:`; label "0".."3"."""
    label = int(r["label"]) if r.get("label") not in (None, "") else None
    return f"{r['ctx']}{_options(r['endings'])}\nAnswer:{_answer(label, with_answer)}"


def plain_text(r: Record, with_answer: bool = False) -> str:
    """Corpora (C4, WikiText-2, the embedded stand-ins): the `text` field."""
    return r["text"]
