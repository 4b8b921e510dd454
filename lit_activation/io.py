"""Run outputs: atomic writes that never overwrite an earlier run's results.

Each file is written to a temporary name in the same directory and renamed into place, so an
interrupted run leaves either the old state or the complete new file, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def _atomic_write(path: Path, data: bytes) -> Path:
    check_new([path])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented JSON, atomically; refuses to overwrite."""
    return _atomic_write(Path(path), (json.dumps(obj, indent=2) + "\n").encode())


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV table, atomically; refuses to overwrite."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return _atomic_write(Path(path), buf.getvalue().encode())


def write_text(path: str | Path, text: str) -> Path:
    """Write text (Markdown reports), atomically; refuses to overwrite."""
    return _atomic_write(Path(path), text.encode())


def save_figure(path: str | Path, figure: Any) -> Path:
    """Save a matplotlib figure as PNG, atomically; refuses to overwrite."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return _atomic_write(Path(path), buf.getvalue())


def check_new(paths: Iterable[str | Path]) -> None:
    """Fail before any work if a result file already exists (not after an hour of scoring)."""
    for p in paths:
        if Path(p).exists():
            raise FileExistsError(f"{p} already exists; results are never overwritten. Choose a new run dir or version.")
