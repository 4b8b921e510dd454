"""Run outputs: atomic writes that never overwrite an earlier run's results.

Each file is written to a temporary name in the same directory and renamed into place, so an
interrupted run leaves either the old state or the complete new file, never half of one. Results
are never overwritten; files derived from them (a comparison's summary, rebuilt after every run)
say so with `overwrite=True`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def _staging_name(path: Path) -> Path:
    """A fresh hidden name beside `path`, for writing there before the rename into place."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"


def staging_dir(path: Path) -> Path:
    """Create an empty directory beside `path` to fill and then rename into place (`os.replace`).

    Not tempfile.mkdtemp (nor mkstemp for files): those create 0700 / 0600, and a result renamed into
    place would keep that mode; created with 0777 / 0666, it gets what the user's umask allows.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _staging_name(path)
    os.mkdir(tmp, 0o777)
    return tmp


def _atomic_write(path: Path, data: bytes, overwrite: bool = False) -> Path:
    if not overwrite:
        check_new([path])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _staging_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as in staging_dir
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any, overwrite: bool = False) -> Path:
    """Write `obj` as indented JSON, atomically; refuses to overwrite unless told (derived files)."""
    return _atomic_write(Path(path), (json.dumps(obj, indent=2) + "\n").encode(), overwrite)


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]], overwrite: bool = False) -> Path:
    """Write a CSV table, atomically; refuses to overwrite unless told (derived files)."""
    return _atomic_write(Path(path), _csv_bytes(header, rows), overwrite)


def read_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows as dicts) of a CSV table; ([], []) when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def append_csv_row(path: str | Path, header: Sequence[str], row: Sequence[Any]) -> Path:
    """Add one row to a CSV table, atomically: the file holds every earlier row plus this one, or
    (if interrupted) exactly what it held before. A table with another header is refused."""
    existing_header, rows = read_csv(path)
    if existing_header and existing_header != list(header):
        raise ValueError(f"{path} has columns {existing_header}; this run writes {list(header)}. Choose a new output directory.")
    old = [[r[h] for h in header] for r in rows]
    return _atomic_write(Path(path), _csv_bytes(header, [*old, row]), overwrite=True)


def write_text(path: str | Path, text: str, overwrite: bool = False) -> Path:
    """Write text (Markdown reports), atomically; refuses to overwrite unless told (derived files)."""
    return _atomic_write(Path(path), text.encode(), overwrite)


def save_figure(path: str | Path, figure: Any, overwrite: bool = False) -> Path:
    """Save a matplotlib figure as PNG, atomically; refuses to overwrite unless told (derived files)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return _atomic_write(Path(path), buf.getvalue(), overwrite)


def write_tensors(path: str | Path, tensors: dict[str, Any], overwrite: bool = False) -> Path:
    """Write named tensors as safetensors, atomically (a resumed run's finished work)."""
    from safetensors.torch import save

    return _atomic_write(Path(path), save({name: t.contiguous() for name, t in tensors.items()}), overwrite)


def read_tensors(path: str | Path) -> dict[str, Any]:
    """Named tensors from a safetensors file, on the host (no pickle is ever loaded)."""
    from safetensors.torch import load_file

    return load_file(str(path))


def check_can_create(path: str | Path, option: str) -> None:
    """Fail before any work if directory `path` (option `option`) could not be made: something that
    is not a directory in its way, or no write permission where it would be created."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise FileExistsError(f"{option} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path} cannot be written: {existing} is not writable")


def check_new(paths: Iterable[str | Path]) -> None:
    """Fail before any work if a result file already exists (not after an hour of scoring)."""
    for p in paths:
        if Path(p).exists():
            raise FileExistsError(f"{p} already exists; results are never overwritten. Choose a new run dir or version.")
