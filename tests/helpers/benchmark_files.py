"""Small benchmark files in each benchmark's real field layout, written by the tests themselves."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "log", "red", "blue", "big", "small", "quick", "slow", "happy", "sad", "old", "new"]


class ModelLoaded(Exception):
    """Raised by the `no_model_loading` fixture's loader (conftest.py): the run got as far as the weights."""


def _words(i: int, n: int = 8) -> list[str]:
    """n words, distinct for every i < 400: the first two spell i in base 20, the rest are seeded by i."""
    return [WORDS[i % 20], WORDS[(i // 20) % 20], *random.Random(i).choices(WORDS, k=n - 2)]


def _sentence(i: int, n: int = 8) -> str:
    return " ".join(_words(i, n)).capitalize() + "."


def _phrase(i: int, n: int) -> str:
    """n words; distinct for distinct i < 400 when n >= 2 (for n == 1: distinct for i < 20)."""
    return " ".join(_words(i, max(n, 2))[:n])


def _options(i: int, k: int) -> list[str]:
    """k answer options of row i, distinct within the row and from every other row's, of varied lengths."""
    return [_phrase(k * i + j, 2 + (i + j) % 3) for j in range(k)]


def _edited(i: int, k: int) -> str:
    """Sentence i with k of its words replaced by different ones: similar, never identical."""
    words = _words(i)
    rng = random.Random(1000 + i)
    for pos in rng.sample(range(len(words)), k):
        words[pos] = rng.choice([w for w in WORDS if w != words[pos]])
    return " ".join(words).capitalize() + "."


def sts_rows(n: int) -> list[tuple[str, str, float]]:
    """n distinct sentence pairs; pair i differs in 1 + i % 5 words and its gold score falls with that."""
    return [(_sentence(i), _edited(i, 1 + i % 5), 1.0 - (i % 5) / 4) for i in range(n)]


def _jsonl(path: Path, rows: list[dict], gz: bool = False) -> str:
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(path)


def write_benchmarks(root: Path, n: int = 24) -> dict[str, str]:
    """One file per registered hub benchmark; returns data_files for the datamodule."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        # Prompts longer than max_length keep their END, so every row differs near its end too
        # (question, options, endings), and rows differ in length (so batches really are padded).
        "boolq": _jsonl(root / "boolq.jsonl", [
            {"question": f"is it {_phrase(i, 2 + i % 3)}", "answer": i % 2 == 0, "passage": _sentence(i)} for i in range(n)
        ]),
        "mmlu": _jsonl(root / "mmlu.jsonl", [
            {"question": _sentence(i, 3 + i % 6)[:-1] + "?", "subject": "high_school_math", "choices": _options(i, 4), "answer": i % 4} for i in range(n)
        ]),
        "siqa": _jsonl(root / "siqa.jsonl", [
            {"context": _sentence(i), "question": ["Why?", "What next?", "How did they feel?"][i % 3],
             **dict(zip(["answerA", "answerB", "answerC"], _options(i, 3), strict=True)), "label": str(1 + i % 3)} for i in range(n)
        ]),
        # sol1 and sol2 of a row have different lengths (acc_norm differs from acc only then)
        "piqa": _jsonl(root / "piqa.jsonl", [
            {"goal": _sentence(i), "sol1": _phrase(2 * i, 1 + i % 3), "sol2": _phrase(2 * i + 1, 2 + i % 3 + i % 2), "label": i % 2} for i in range(n)
        ]),
        "hellaswag": _jsonl(root / "hellaswag.jsonl", [
            {"ctx": _sentence(i), "endings": _options(i, 4), "label": str(i % 4), "activity_label": WORDS[i % 20]} for i in range(n)
        ]),
        "gsm8k": _jsonl(root / "gsm8k.jsonl", [{"question": f"{_sentence(i, 2 + i % 5)} What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(n)]),
        # every document its own sentences: no text repeats across documents
        "c4": _jsonl(root / "c4.jsonl.gz", [
            {"text": " ".join(_sentence(6 * i + k) for k in range(6)), "url": "u", "timestamp": "t"} for i in range(n)
        ], gz=True),
    }
    wiki = root / "wikitext2.jsonl"
    files["wikitext2"] = _jsonl(wiki, [{"text": _sentence(i, 12) if i % 3 else ""} for i in range(4 * n)])
    with open(root / "stsb.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence1", "sentence2", "score"])
        w.writerows(sts_rows(n))
    files["stsb"] = str(root / "stsb.csv")
    with open(root / "sick.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["pair_ID", "sentence_A", "sentence_B", "relatedness_score"])
        w.writerows([i, a, b, 1.0 + 4.0 * g] for i, (a, b, g) in enumerate(sts_rows(n)))
    files["sick"] = str(root / "sick.tsv")
    return files
