"""Small benchmark files in each benchmark's real field layout, written by the tests themselves."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

WORDS = "the a cat dog sat ran on under mat log red blue big small quick slow happy sad old new".split()


def _sentence(i: int, n: int = 8) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n)).capitalize() + "."


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
        "boolq": _jsonl(root / "boolq.jsonl", [{"question": f"is it {WORDS[i % 20]}", "answer": i % 2 == 0, "passage": _sentence(i)} for i in range(n)]),
        "mmlu": _jsonl(root / "mmlu.jsonl", [{"question": f"Q{i}?", "subject": "high_school_math", "choices": ["1", "2", "3", "4"], "answer": i % 4} for i in range(n)]),
        "siqa": _jsonl(root / "siqa.jsonl", [{"context": _sentence(i), "question": "Why?", "answerA": "a", "answerB": "b", "answerC": "c", "label": str(1 + i % 3)} for i in range(n)]),
        "piqa": _jsonl(root / "piqa.jsonl", [{"goal": _sentence(i), "sol1": "x", "sol2": "y", "label": i % 2} for i in range(n)]),
        "hellaswag": _jsonl(root / "hellaswag.jsonl", [{"ctx": _sentence(i), "endings": ["e1", "e2", "e3", "e4"], "label": str(i % 4), "activity_label": "x"} for i in range(n)]),
        "gsm8k": _jsonl(root / "gsm8k.jsonl", [{"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"} for i in range(n)]),
        "c4": _jsonl(root / "c4.jsonl.gz", [{"text": " ".join(_sentence(i + k) for k in range(6)), "url": "u", "timestamp": "t"} for i in range(n)], gz=True),
    }
    wiki = root / "wikitext2.jsonl"
    files["wikitext2"] = _jsonl(wiki, [{"text": _sentence(i, 12) if i % 3 else ""} for i in range(4 * n)])
    with open(root / "stsb.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence1", "sentence2", "score"])
        for i in range(n):
            w.writerow([_sentence(i), _sentence(i + (i % 5)), 1.0 - (i % 5) / 4])
    files["stsb"] = str(root / "stsb.csv")
    with open(root / "sick.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["pair_ID", "sentence_A", "sentence_B", "relatedness_score"])
        for i in range(n):
            w.writerow([i, _sentence(i), _sentence(i + (i % 5)), 5.0 - (i % 5)])
    files["sick"] = str(root / "sick.tsv")
    return files
