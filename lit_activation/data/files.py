"""Local data files checked before they are read: JSON lines (or a JSON array), CSV/TSV and parquet, optionally gzipped.

The `datasets` library reads them (registry.load_records), but what it cannot read ends in its traceback
(`DatasetGenerationError`, a bare `StopIteration` for an empty file), and some files it reads wrong
without a word: a record without a field gets None, a CSV row with extra cells shifts its columns. Each
file is checked here first, in one pass: a problem is one line naming the file, the line and what to do
(lit_activation.files.BrokenFile). Checked once per file version and process.

What each record must hold is given as {field: kind}; the kinds:
- `text`: a string; `texts`: a list of strings (answer options);
- `number`: a number; `index`: a whole number; `flag`: true or false;
- `label`: a string, a whole number or null (a split without gold labels); `any`: present, any value.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import math
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lit_activation.files import BrokenFile, ends_early, json_error, json_type

ENDINGS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
KINDS = ("text", "texts", "number", "index", "flag", "label", "any")
_IN_WORDS = {
    "text": "text", "texts": "a list of texts", "number": "a number", "index": "a whole number", "flag": "true or false",
    "label": "a label (text or a whole number)", "any": "a value",
}
_LIST_REMEDY = "give it as JSON lines or parquet, whose cells can hold lists"


def ending(path: str | Path) -> str:
    """A data file's format ending, .gz aside: `.jsonl`, `.csv`, ..."""
    return Path(str(path).removesuffix(".gz")).suffix


def check_data_file(path: str | Path, fields: Mapping[str, str], dataset: str) -> None:
    """Refuse a data file of `dataset` that cannot be read whole, or whose records lack `fields` or hold
    them as another kind of value: in one line naming the file, the line and the field."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Data file {str(path)!r} does not exist")
    if path.is_dir():
        raise BrokenFile(path, "is a directory, not a data file", f"give the file(s) of {dataset!r} in data_files")
    stat = path.stat()
    _check(str(path.resolve()), stat.st_mtime_ns, stat.st_size, tuple(fields.items()), dataset)


@functools.cache
def _check(path: str, mtime_ns: int, size: int, fields: tuple[tuple[str, str], ...], dataset: str) -> None:
    """Check one version of a file once per process (the data module checks it, the reader again)."""
    file, kinds = Path(path), dict(fields)
    remedy = fix(dataset, kinds)
    if ending(file) == ".parquet":
        _check_parquet(file, kinds, remedy)
        return
    lines = _lines(file, remedy)
    first = next(lines, None)
    while first is not None and not first[1].strip():
        first = next(lines, None)
    if first is None:
        raise BrokenFile(file, "is empty: it holds no records", f"give a file that holds the records of {dataset!r}")
    if ending(file) in (".csv", ".tsv"):
        _check_table(file, first, lines, "\t" if ending(file) == ".tsv" else ",", kinds, remedy)
    elif ending(file) == ".json" and first[1].lstrip().startswith("["):
        _check_array(file, first, lines, kinds, remedy)
    else:
        _check_json_lines(file, first, lines, kinds, remedy)


def fix(dataset: str, kinds: Mapping[str, str]) -> str:
    """What to do about a data file that cannot be used: the layout its records need."""
    layout = ", ".join(f"{f} ({_IN_WORDS[k]})" for f, k in kinds.items())
    return f"each record of {dataset!r} needs {layout}" if layout else f"fix the file of {dataset!r}"


def _lines(path: Path, remedy: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line, decoded as UTF-8 (a .gz file decompressed); a byte that is not
    UTF-8, or a gzip stream that ends early, is refused naming the line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    number = 0
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):  # noqa: B007 - the last number names where a gzip stream broke
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise BrokenFile(
                        path, f"is not UTF-8 text: line {number} holds byte {raw[err.start]:#04x}",
                        "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
                    ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        what = "ends before its gzip stream does" if isinstance(err, EOFError) else "is not a whole gzip file"
        raise BrokenFile(path, f"is cut short or damaged: it {what} (after line {number})", "copy or compress it again") from None


def _check_json_lines(path: Path, first: tuple[int, str], lines: Iterator[tuple[int, str]], kinds: Mapping[str, str], remedy: str) -> None:
    """One JSON object per line (blank lines are skipped); a last line cut mid-record is called cut short."""
    seen: dict[str, tuple[str, int]] = {}  # field -> (the JSON type of its first value, its line)
    pending: tuple[int, str] | None = first
    while pending is not None:
        number, text = pending
        pending = next(lines, None)
        if not text.strip():
            continue
        try:
            record = json.loads(text.rstrip("\r\n"))  # its own line: a column counts in it
        except json.JSONDecodeError as err:
            if pending is None and not text.endswith("\n") and ends_early(err, text):
                raise BrokenFile(path, f"is cut short: its last line ({number}) stops in the middle of a record", "copy the whole file again") from None
            raise BrokenFile(
                path, f"is not JSON lines: line {number} is not one JSON record ({json_error(err, line=False)})",
                "write one whole JSON object per line (a pretty-printed file is not JSON lines)",
            ) from None
        _check_record(path, f"line {number}", record, kinds, remedy, seen)


def _check_array(path: Path, first: tuple[int, str], lines: Iterator[tuple[int, str]], kinds: Mapping[str, str], remedy: str) -> None:
    """A .json file holding one array of records."""
    text = first[1] + "".join(line for _, line in lines)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        line = first[0] + err.lineno - 1
        if ends_early(err, text):
            raise BrokenFile(path, f"is cut short: its JSON array stops at line {line} before it is closed", "copy the whole file again") from None
        problem = f"is not valid JSON ({err.msg.removesuffix(' at')} at line {line}, column {err.colno})"
        raise BrokenFile(path, problem, "fix the JSON, or write it as JSON lines") from None
    if not isinstance(records, list):
        raise BrokenFile(path, f"holds a JSON {json_type(records)}; a .json data file holds JSON lines or one array of records", remedy)
    if not records:
        raise BrokenFile(path, "is empty: its array holds no records", remedy)
    seen: dict[str, tuple[str, int]] = {}
    for i, record in enumerate(records):
        _check_record(path, f"record {i}", record, kinds, remedy, seen)


def _check_record(path: Path, where: str, record: Any, kinds: Mapping[str, str], remedy: str, seen: dict[str, tuple[str, int]]) -> None:
    """One JSON record: an object whose fields have their kinds, and whose every field holds one JSON type
    in the whole file (what the `datasets` library needs to build a column of it)."""
    if not isinstance(record, dict):
        raise BrokenFile(path, f"{where} holds a JSON {json_type(record)}, not a record (a JSON object)", remedy)
    for field, kind in kinds.items():
        if field not in record:
            raise BrokenFile(path, f"{where} lacks the field {field!r}", remedy)
        value = record[field]
        if not fits(value, kind):
            raise BrokenFile(path, f"{where} has {field!r} as {_shown(value)}; it must be {_IN_WORDS[kind]}", remedy)
    for field, value in record.items():
        if value is None:
            continue
        kind = json_type(value)
        first, at = seen.setdefault(field, (kind, where))
        if kind != first:
            problem = f"{where} has {field!r} as {json_type(value)} where {at} has {first}"
            raise BrokenFile(path, problem, "give a field one kind of value in every record")


def fits(value: Any, kind: str) -> bool:
    """Whether a JSON value is of a field kind (see the module's docstring)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())
    return {
        "text": lambda: isinstance(value, str),
        "texts": lambda: isinstance(value, list) and all(isinstance(v, str) for v in value),
        "number": lambda: number,
        "index": lambda: whole,
        "flag": lambda: isinstance(value, bool),
        "label": lambda: value is None or isinstance(value, str) or whole,
        "any": lambda: True,
    }[kind]()


def _shown(value: Any) -> str:
    """A value as the line shows it: its kind, and the value itself when short."""
    text = json.dumps(value)
    if value is None or isinstance(value, bool):
        return text  # null, true, false say what they are
    return f"{json_type(value)} {text}" if len(text) <= 40 else json_type(value)


def _check_table(path: Path, header: tuple[int, str], lines: Iterator[tuple[int, str]], delimiter: str, kinds: Mapping[str, str], remedy: str) -> None:
    """A CSV/TSV table: a header of distinct names with every field, every row as wide as it, and no empty
    cell where a field needs a value (pandas reads it as a missing value)."""
    rows = csv.reader((text for _, text in _chain(header, lines)), delimiter=delimiter)
    try:
        names = next(rows)
        columns = {name.strip(): i for i, name in enumerate(names)}
        if len(columns) < len(names):
            raise BrokenFile(path, f"has a header with a name twice or an empty name ({delimiter.join(names)[:80]})", "give every column its own name")
        for field, kind in kinds.items():
            if field not in columns:
                raise BrokenFile(path, f"has no column {field!r} (its columns: {', '.join(columns)[:120]})", remedy)
            if kind == "texts":
                raise BrokenFile(path, f"holds {field!r}, a list of texts, which a CSV cell cannot", _LIST_REMEDY)
        records = 0
        for row in rows:
            if not row:
                continue  # a blank line: pandas skips it too
            records += 1
            number = header[0] + rows.line_num - 1
            if len(row) != len(names):
                problem = f"line {number} has {len(row)} cells and the header {len(names)}"
                raise BrokenFile(path, problem, "give every row the header's cells, and quote a cell that holds the delimiter")
            for field, kind in kinds.items():
                cell = row[columns[field]].strip()
                if not cell and kind not in ("label", "any"):
                    raise BrokenFile(path, f"line {number} has no value for {field!r}", remedy)
                if cell and not _cell_fits(cell, kind):
                    raise BrokenFile(path, f"line {number} has {field!r} as {cell[:40]!r}; it must be {_IN_WORDS[kind]}", remedy)
        if not records:
            raise BrokenFile(path, "is empty: it holds a header and no records", "give a file that holds the records")
    except csv.Error as err:
        raise BrokenFile(path, f"is not a valid table at line {header[0] + rows.line_num - 1} ({err})", "fix the quoting of that line") from None


def _chain(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def _cell_fits(cell: str, kind: str) -> bool:
    """Whether a CSV cell reads as a value of a field kind (pandas' reading: numbers, True/False)."""
    if kind == "flag":
        return cell.lower() in ("true", "false")
    if kind not in ("number", "index"):
        return True
    try:
        value = float(cell)
    except ValueError:
        return False
    return kind == "number" or (math.isfinite(value) and value.is_integer())


# Arrow types of each field kind (parquet keeps the type of every column).
def _arrow_fits(kind: str, arrow_type: Any) -> bool:
    import pyarrow as pa

    text = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
    integer = pa.types.is_integer(arrow_type)
    return {
        "text": text,
        "texts": (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type))
        and (pa.types.is_string(arrow_type.value_type) or pa.types.is_large_string(arrow_type.value_type)),
        "number": integer or pa.types.is_floating(arrow_type),
        "index": integer,
        "flag": pa.types.is_boolean(arrow_type),
        "label": text or integer or pa.types.is_null(arrow_type),
        "any": True,
    }[kind]


def _check_parquet(path: Path, kinds: Mapping[str, str], remedy: str) -> None:
    """A parquet file: its footer (a cut copy has none), a column of the right type for every field, and
    no missing value where a field needs one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        schema = table.schema_arrow
        if table.metadata.num_rows == 0:
            raise BrokenFile(path, "is empty: it holds no records", "give a file that holds the records")
        for field, kind in kinds.items():
            if field not in schema.names:
                raise BrokenFile(path, f"has no column {field!r} (its columns: {', '.join(schema.names)[:120]})", remedy)
            arrow_type = schema.field(field).type
            if not _arrow_fits(kind, arrow_type):
                raise BrokenFile(path, f"has the column {field!r} of type {arrow_type}; it must hold {_IN_WORDS[kind]}", remedy)
        required = [f for f, k in kinds.items() if k not in ("label", "any")]
        if required:
            columns = table.read(columns=required)
            empty = next((f for f in required if columns.column(f).null_count), None)
            if empty is not None:
                raise BrokenFile(path, f"has missing values in the column {empty!r}", remedy)
    except (pa.ArrowException, OSError) as err:  # pyarrow says a cut file has no footer, a damaged one bad pages
        reason = "no parquet footer at its end" if "magic bytes" in str(err) else str(err).splitlines()[0][:120]
        raise BrokenFile(path, f"is cut short or is not a parquet file ({reason})", "copy or export it again") from None
