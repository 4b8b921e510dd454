"""Run outputs: atomic writes that never overwrite an earlier run's results.

Each file is written to a temporary name in the same directory, flushed to the disk and renamed into
place, so an interrupted run (killed, or out of disk space) leaves either the old state or the complete
new file, never half of one. Results are never overwritten; files derived from them (a comparison's
summary, rebuilt after every run) say so with `overwrite=True`. A full disk or a directory that cannot
be written is one line naming the file (`NoSpaceLeft`, PermissionError), not an OSError's traceback.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

MIN_FREE_BYTES = 1 << 20  # a run refused before any work when its output's disk has less free (1 MiB)


class NoSpaceLeft(OSError):
    """A result could not be written: its disk is full (or the user's quota spent). What was written before is kept."""


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Say a write to `path` that failed for want of space or permission in one line naming it."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceLeft(
                f"no space left on the disk of {path}: free some space or choose another directory, then run again; "
                "what was written before is kept, and no file was left half-written"
            ) from err
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise PermissionError(f"{path} cannot be written: {path.parent} is not writable; choose another directory") from err
        raise


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


@contextlib.contextmanager
def staged_dir(path: Path) -> Iterator[Path]:
    """A staging directory beside `path` to fill (a saved model, a converted one): renamed into place when
    the block ends, removed whole when it fails; a full disk is said in one line (`writing`)."""
    with writing(path):
        tmp = staging_dir(path)
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _atomic_write(path: Path, data: bytes, overwrite: bool = False) -> Path:
    if not overwrite:
        check_new([path])
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _staging_name(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as in staging_dir
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # on the disk before the rename: a crash never leaves the new name on half a file
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


def check_can_create(path: str | Path, option: str, remedy: str | None = None) -> None:
    """Fail before any work if directory `path` (option `option`) could not be made or filled: something
    that is not a directory in its way, no write permission where it would be created, or a full disk."""
    path = Path(path).absolute()
    remedy = remedy or f"choose another {option}"
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise FileExistsError(f"{option} {path}: {existing} is a file, not a directory; {remedy}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {path} cannot be written: {existing} is not writable; {remedy}")
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise NoSpaceLeft(f"{option} {path}: no space left on its disk ({free} bytes free); free some space, or {remedy}")


def check_new(paths: Iterable[str | Path]) -> None:
    """Fail before any work if a result file already exists (not after an hour of scoring)."""
    for p in paths:
        if Path(p).exists():
            raise FileExistsError(f"{p} already exists; results are never overwritten. Choose a new run dir or version.")
