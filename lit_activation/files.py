"""A user's file that cannot be used, said in one line: the file, what is wrong with it in a user's words, what to do.

Every reader of a file a user hands in (a model directory, a data file, a run's files read back by `report`,
`--resume` or an allocation) checks it before the work that needs it, or as soon as it reads it, and raises
`BrokenFile`. It is a ValueError, so the command line prints it as one `error:` line (cli/errors.py); an
error of any other kind is a bug and keeps its traceback. The checks here are of the formats several readers
share: JSON objects, the kinds of value their fields hold (shape_problem), and safetensors files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class BrokenFile(ValueError):
    """A file that exists but cannot be used as what it must be: `<path>: <problem>; <what to do>`."""

    def __init__(self, path: str | Path, problem: str, remedy: str) -> None:
        self.path = Path(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever a library's message held
        super().__init__(f"{path}: {self.problem}; {remedy}")


def first_line(err: BaseException) -> str:
    """An error's first line, else its type's name."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(err).__name__


def line_of(data: bytes | str, position: int) -> int:
    """The 1-based line of a byte or character position."""
    newline = b"\n" if isinstance(data, bytes) else "\n"
    return data.count(newline, 0, position) + 1


def decode_utf8(path: Path, data: bytes, remedy: str) -> str:
    """`data` (the file's bytes) as text; a file that is not UTF-8 is refused naming the first bad byte's line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BrokenFile(path, f"is not UTF-8 text (byte {data[err.start]:#04x} at line {line_of(data, err.start)})", remedy) from None


def read_json_object(path: str | Path, remedy: str) -> dict[str, Any]:
    """A JSON file that must hold one object (a run's record, a config, an index): read whole, or refused
    as empty, not UTF-8, cut short, not JSON (with its line) or not an object. NaN and Infinity are read
    as Python writes them."""
    path = Path(path)
    if path.is_dir():
        raise BrokenFile(path, "is a directory, not a JSON file", remedy)
    data = path.read_bytes()
    text = decode_utf8(path, data, remedy)
    if not text.strip():
        raise BrokenFile(path, "is empty", remedy)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        if ends_early(err, text):
            raise BrokenFile(path, f"is cut short: its JSON stops at line {err.lineno} before the object is complete", remedy) from None
        raise BrokenFile(path, f"is not valid JSON ({json_error(err)})", remedy) from None
    if not isinstance(obj, dict):
        raise BrokenFile(path, f"holds a JSON {json_type(obj)}, not an object", remedy)
    return obj


def json_error(err: json.JSONDecodeError, line: bool = True) -> str:
    """What json says is wrong and where: 'Expecting value at line 3, column 1' (json's messages that end
    in 'at' expect the place after them)."""
    where = f"line {err.lineno}, column {err.colno}" if line else f"column {err.colno}"
    return f"{err.msg.removesuffix(' at')} at {where}"


def ends_early(err: json.JSONDecodeError, text: str) -> bool:
    """Whether JSON text failed because it stops where more was expected: a file cut short."""
    return err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string")


def json_type(value: Any) -> str:
    """What a JSON value is, in a user's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false value"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    return "list" if isinstance(value, list) else "object"


def is_number(value: Any) -> bool:
    """A JSON number (true/false are not numbers, NaN is: writers store a diverged value as NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The kinds of value a shape names (shape_problem).
NUMBER, WHOLE, TEXT, ANY = "a number", "a whole number", "text", "any value"


def shape_problem(value: Any, shape: Any, where: str) -> str | None:
    """Where `value` is not of `shape`, in a user's words, or None. Shapes: a kind (NUMBER, WHOLE, TEXT,
    ANY), [shape] (a list of them), (shape, shape) (a list of exactly those), {"field": shape} (an object
    whose fields, when present and not null, have their shapes), {"*": shape} (an object of such values)."""
    if value is None or shape == ANY:
        return None
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where} is {_a(json_type(value))}, not an object"
        items = value.items() if "*" in shape else ((k, value[k]) for k in shape if k in value)
        return next((p for k, v in items if (p := shape_problem(v, shape.get("*", shape.get(k)), f"{where}.{k}"))), None)
    if isinstance(shape, (list, tuple)):
        if not isinstance(value, list):
            return f"{where} is {_a(json_type(value))}, not a list"
        if isinstance(shape, tuple) and len(value) != len(shape):
            return f"{where} holds {len(value)} values, not {len(shape)}"
        shapes = shape if isinstance(shape, tuple) else [shape[0]] * len(value)
        return next((p for i, (v, s) in enumerate(zip(value, shapes, strict=True)) if (p := shape_problem(v, s, f"{where}[{i}]"))), None)
    fits = {NUMBER: is_number(value), WHOLE: is_number(value) and float(value).is_integer(), TEXT: isinstance(value, str)}[shape]
    return None if fits else f"{where} is {_a(json_type(value))}, not {shape}"


def _a(kind: str) -> str:
    """A JSON kind with its article: 'a number', 'an object', 'text', 'null'."""
    return kind if kind in ("text", "null") else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


# Bytes per element of each safetensors dtype (the format's own list).
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
_MAX_HEADER = 100_000_000  # the format's own limit on the header's length


def safetensors_problem(path: Path) -> str | None:
    """What makes a file unreadable as safetensors, in a user's words (cut short, not safetensors, a
    damaged header), or None. Reads only the header: the tensors' sizes are checked against the file's."""
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        if len(head) < 8 or n == 0 or n > _MAX_HEADER:
            return "is not a safetensors file (no header at its start)" if size >= 8 else f"is cut short: {size} bytes, not even a header"
        raw = f.read(n)
    if len(raw) < n:
        return f"is cut short: its header alone needs {8 + n} bytes and the file holds {size}"
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "is not a safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return "is not a safetensors file (its header is not a JSON object)"
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = info["data_offsets"]
            items = math.prod(info["shape"])
            width = SAFETENSORS_DTYPES[info["dtype"]]
            valid = all(isinstance(v, int) and v >= 0 for v in (start, stop, items)) and stop - start == items * width
        except (TypeError, KeyError, ValueError):
            valid = False
        if not valid:
            return f"has a damaged header (tensor {name!r})"
        spans.append((start, stop))
    end = 0
    for start, stop in sorted(spans):  # the tensors tile the data, in some order, without gaps
        if start != end:
            return "has a damaged header (its tensors do not tile the data)"
        end = stop
    data = size - 8 - n
    if data < end:
        return f"is cut short: it holds {data} bytes of tensor data and its header lists {end}"
    if data > end:
        return f"has {data - end} bytes after its last tensor: it was not written whole by safetensors"
    return None


def check_safetensors(path: str | Path, remedy: str) -> None:
    """Refuse a safetensors file that cannot be read (`safetensors_problem`)."""
    problem = safetensors_problem(Path(path))
    if problem is not None:
        raise BrokenFile(path, problem, remedy)
