"""The report's inputs: a run directory's files, parsed by kind, and the version_N layout they sit in."""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_activation.data.registry import REGISTRY
from lit_activation.files import ANY, NUMBER, TEXT, WHOLE, BrokenFile, decode_utf8, read_json_object, shape_problem

# The files a run directory can hold -> what they are (the writers: callbacks/*.py, comparison.py).
KINDS = {
    "counts.json": "counts", "llmdcos.json": "llmdcos", "sts.json": "sts", "allpairs.json": "allpairs",
    "results.csv": "compare", "zeroshot.json": "zeroshot", "pruning.json": "pruning",
}
FIGURES = {
    "counts": ("counts.png", "experts.png"), "llmdcos": ("llmdcos_box.png", "similarity_matrix.png"), "sts": ("sts_layers.png",),
    "compare": ("compare.png",), "pruning": ("sparsity.png",),
}  # allpairs: every PNG of its directory (its writer is newer than this list)


class Missing(Exception):
    """A run holds the file but not a field an assessment needs."""


@dataclass
class Run:
    """One input directory and its parsed files, by kind."""

    index: int
    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return f"run {self.index}"

    def figures(self) -> list[Path]:
        """The PNGs its writers made, in a fixed order."""
        found = [self.path / f for kind in self.data for f in FIGURES.get(kind, ()) if (self.path / f).is_file()]
        if "allpairs" in self.data:
            found += sorted(p for p in self.path.glob("*.png") if p not in found)
        return found


# What to do about a run file that cannot be read: it was written whole (atomically), so it was changed since.
DAMAGED = "it was changed or damaged after the run wrote it: restore it, or leave this run out of the report"

# Of each run file, the fields the report reads and their kinds (lit_activation.files.shape_problem): a field that
# is absent (or null) makes the claims that need it "cannot assess"; one of another kind is a damaged file.
NUMBERS = [NUMBER]
SHAPES: dict[str, Any] = {
    "counts": {
        "model": TEXT, "gamma": NUMBER, "n_layers": WHOLE,
        "datasets": {"*": {"n_samples": NUMBER, "layer_counts": NUMBERS, "quantile_counts": {"*": {"threshold": NUMBER, "layer_counts": NUMBERS}}}},
    },
    "llmdcos": {
        "model": TEXT, "datasets": [TEXT], "n_layers": WHOLE, "n_pairs": NUMBER, "llmdcos": {"*": [NUMBERS]}, "matrix": [NUMBERS],
        "matrix_layers": (WHOLE, WHOLE),
    },
    "sts": {
        "model": TEXT, "dataset": TEXT, "layers": [ANY], "n_pairs": NUMBER, "spearman": NUMBER, "p_value": NUMBER, "layer_sum": NUMBERS, "gold": NUMBERS,
        "hidden_layer_sum": NUMBERS, "tfidf": NUMBERS, "hidden_spearman": NUMBER, "hidden_p_value": NUMBER, "tfidf_spearman": NUMBER,
        "tfidf_p_value": NUMBER,
    },
    "allpairs": {},
    "zeroshot": {"protocol": TEXT, "results": {"*": {"acc": NUMBER, "acc_norm": NUMBER, "acc_stderr": NUMBER}}},
    "pruning": {"model": TEXT, "method": TEXT, "target_sparsity": NUMBER, "calibration": {"dataset": TEXT}},
    "comparison": {
        "fixed": {"model": TEXT, "metric": TEXT, "evaluation": TEXT, "calibration": {"dataset": TEXT}, "zeroshot": {"protocol": TEXT}},
    },
}


def read_json(path: Path, kind: str | None = None) -> dict:
    """A run file's JSON object, whose fields the report reads are of their kinds (SHAPES[kind]); anything
    else is refused in one line naming the file."""
    obj = read_json_object(path, DAMAGED)
    problem = shape_problem(obj, SHAPES.get(kind, {}), path.stem)
    if problem is not None:
        raise BrokenFile(path, problem, DAMAGED)
    return obj


def read_results(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A comparison's results.csv: (header, rows); a file that is not UTF-8 or whose rows are not as wide
    as its header is refused naming the line."""
    text = decode_utf8(path, path.read_bytes(), DAMAGED)
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows, [])
        records = []
        for row in rows:
            if len(row) != len(header):
                raise BrokenFile(path, f"line {rows.line_num} has {len(row)} cells and the header {len(header)}", DAMAGED)
            records.append(dict(zip(header, row, strict=True)))
    except csv.Error as err:
        raise BrokenFile(path, f"is not a valid table at line {rows.line_num} ({err})", DAMAGED) from None
    return header, records


def load_run(index: int, path: Path) -> Run:
    """Parse every known file of a run directory; a directory with none of them is refused, naming them."""
    if not path.is_dir():
        raise FileNotFoundError(f"run dir {path} does not exist (or is not a directory)")
    data: dict[str, Any] = {}
    for name, kind in KINDS.items():
        file = path / name
        if not file.is_file():
            continue
        if kind == "compare":
            header, rows = read_results(file)
            record = path / "comparison.json"
            data[kind] = {"header": header, "rows": rows, "comparison": read_json(record, "comparison") if record.is_file() else None}
        else:
            data[kind] = read_json(file, kind)
    if not data:
        newest = newest_version(path)
        if newest is not None:  # a logger dir (runs/<name>): its newest run, as `make demo` passes them
            print(f"{path}: reading its newest run, {newest.name}")
            return load_run(index, newest)
        raise ValueError(f"run dir {path} holds none of the files report reads: {', '.join(KINDS)}")
    return Run(index, path, data)


def versions(parent: Path) -> list[tuple[int, Path]]:
    """The version_N entries under `parent` (the logger's layout), as (N, path), highest first; a stray
    file of that name counts too, so that a new version never tries to take its name."""
    found = [(int(m.group(1)), p) for p in parent.iterdir() if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return sorted(found, reverse=True)


def newest_version(path: Path) -> Path | None:
    """The highest-numbered version_N under `path` that holds a file report reads (None if there is none)."""
    return next((v for _, v in versions(path) if any((v / name).is_file() for name in KINDS)), None)


def need(obj: Any, key: str, where: str) -> Any:
    """obj[key], or `Missing` naming the field and the file (`where`) when it is absent or null."""
    if not isinstance(obj, dict) or key not in obj or obj[key] is None:
        raise Missing(f"{where} lacks {key!r}")
    return obj[key]


def dataset_kind(name: str) -> str:
    """'corpus' (general running text), 'task' (formatted prompts) or 'other', from the registry."""
    spec = REGISTRY.get(name)
    if spec is None:
        return "other"
    return {"corpus": "corpus", "prompt": "task"}.get(spec.kind, "other")


def as_float(value: Any) -> float:
    """A CSV cell as a float; NaN for an empty or non-numeric one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
