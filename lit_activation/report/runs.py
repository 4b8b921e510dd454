"""The report's inputs: a run directory's files, parsed by kind, and the version_N layout they sit in."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_activation import outputs
from lit_activation.data.registry import REGISTRY

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


def read_json(path: Path) -> dict:
    """A run file's JSON object; anything else is refused in one line naming the file."""
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a JSON {type(obj).__name__}; every run file report reads is a JSON object")
    return obj


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
            header, rows = outputs.read_csv(file)
            record = path / "comparison.json"
            data[kind] = {"header": header, "rows": rows, "comparison": read_json(record) if record.is_file() else None}
        else:
            data[kind] = read_json(file)
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
