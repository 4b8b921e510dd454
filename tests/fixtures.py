"""Small benchmark files in each benchmark's real field layout, written by the tests themselves."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

WORDS = "the a cat dog sat ran on under mat log red blue big small quick slow happy sad old new".split()


def _words(i: int, n: int = 8) -> list[str]:
    """n words, distinct for every i < 400: the first two spell i in base 20, the rest are seeded by i."""
    return [WORDS[i % 20], WORDS[(i // 20) % 20], *random.Random(i).choices(WORDS, k=n - 2)]


def _sentence(i: int, n: int = 8) -> str:
    return " ".join(_words(i, n)).capitalize() + "."


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
        w.writerows(sts_rows(n))
    files["stsb"] = str(root / "stsb.csv")
    with open(root / "sick.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["pair_ID", "sentence_A", "sentence_B", "relatedness_score"])
        w.writerows([i, a, b, 1.0 + 4.0 * g] for i, (a, b, g) in enumerate(sts_rows(n)))
    files["sick"] = str(root / "sick.tsv")
    return files
