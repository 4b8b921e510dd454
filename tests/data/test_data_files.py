"""Local data files damaged the ways files get damaged (Hypothesis): JSON lines, a JSON array, CSV, parquet and
gzip, cut at any offset, random bytes, another encoding, a record with a field taken out or of another
kind. Each is read whole or refused in one line naming the file (and the line); and the rules' edges."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_activation.cli import main
from lit_activation.data.registry import load_records
from lit_activation.files import BrokenFile
from tests.helpers.damage import damaged_bytes, with_a_mistyped_field, without_a_field

FUZZ = settings(max_examples=30, deadline=None)
ROOT = Path(__file__).parents[2]
BOOLQ = [{"question": f"is it {i}", "passage": f"Passage {i}.", "answer": i % 2 == 0, "idx": i} for i in range(3)]
MMLU = [{"question": f"Q{i}?", "subject": "math", "choices": ["a", "b", "c", "d"], "answer": i % 4} for i in range(3)]
STSB = "sentence1,sentence2,score\nA dog runs.,A dog sprints.,4.5\n\"A man, a plan.\",A man sings.,1.0\nA cat sits.,A cat naps.,3.5\n"


def json_lines(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def read_or_refused(name: str, data: bytes, suffix: str) -> list[dict] | None:
    """The property: the file is read whole (as a naive reader reads it), or refused in one line naming it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}{suffix}"
        path.write_bytes(data)
        try:
            records = load_records(name, str(path))
        except BrokenFile as err:
            assert err.path == path.resolve() and str(err).startswith(f"{path.resolve()}: ") and "\n" not in str(err)
            return None
        naive = naive_records(path)
        if suffix == ".csv":  # pandas reads a number as one: compare it as a number
            records = [{k: str(v) if isinstance(v, str) else v for k, v in r.items()} for r in records]
            naive = [{k: float(v) if isinstance(r0[k], (int, float)) else v for k, v in n.items()} for n, r0 in zip(naive, records, strict=True)]
        assert records == naive, "read other than a plain reader reads it"
        return records


def naive_records(path: Path) -> list[dict]:
    """An independent reading of a file the check let through: the standard library's, or pyarrow's."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if path.suffix == ".csv":
        return [dict(row) for row in csv.DictReader(io.StringIO(data.decode()))]
    records = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    fields = list(dict.fromkeys(k for r in records for k in r))  # a table's columns: a record without one holds None
    return [{k: r.get(k) for k in fields} for r in records]


@FUZZ
@given(data=st.data())
def test_a_damaged_json_lines_file_is_read_whole_or_named(data):
    records = [dict(r) for r in BOOLQ]
    i = data.draw(st.integers(0, len(records) - 1))
    damaged = data.draw(st.one_of(
        damaged_bytes(json_lines(records)),
        without_a_field(records[i]).map(lambda r: json_lines([*records[:i], r, *records[i + 1 :]])),
        with_a_mistyped_field(records[i]).map(lambda r: json_lines([*records[:i], r, *records[i + 1 :]])),
    ))
    read_or_refused("boolq", damaged, ".jsonl")


@FUZZ
@given(data=st.data())
def test_a_damaged_gzipped_file_or_json_array_is_read_whole_or_named(data):
    whole = gzip.compress(json_lines(MMLU))
    read_or_refused("mmlu", data.draw(damaged_bytes(whole)), ".jsonl.gz")
    with pytest.raises(BrokenFile, match=r"mmlu.json: is cut short: its JSON array stops at line 1 before it is closed"):
        read_or_refused_strict("mmlu", json.dumps(MMLU).encode()[:-3], ".json")


def read_or_refused_strict(name: str, data: bytes, suffix: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}{suffix}"
        path.write_bytes(data)
        return load_records(name, str(path))


@FUZZ
@given(data=st.data())
def test_a_damaged_csv_file_is_read_whole_or_named(data):
    read_or_refused("stsb", data.draw(damaged_bytes(STSB.encode())), ".csv")


@pytest.fixture(scope="module")
def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{"text": f"Document {i}. " * 3} for i in range(4)]), buffer)
    return buffer.getvalue()


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_a_damaged_parquet_file_is_read_whole_or_named(parquet_bytes, data):
    read_or_refused("wiki", data.draw(damaged_bytes(parquet_bytes)), ".parquet")


# ---- the rules, each just inside and just outside its edge


@pytest.mark.parametrize(("record", "problem"), [
    ({"answer": 2.0}, None),  # a whole number written as JSON writes floats
    ({"answer": 2.5}, "line 2 has 'answer' as number 2.5; it must be a whole number"),
    ({"answer": True}, "line 2 has 'answer' as true; it must be a whole number"),
    ({"choices": ["a", "b"]}, None),
    ({"choices": ["a", 2]}, "line 2 has 'choices' as list [\"a\", 2]; it must be a list of texts"),
    ({"choices": "a b"}, "line 2 has 'choices' as text \"a b\"; it must be a list of texts"),
    ({"question": ""}, None),  # empty, but text: an empty prompt is refused when it is formatted, naming its record
    ({"question": None}, "line 2 has 'question' as null; it must be text"),
    ({"subject": 3}, "line 2 has 'subject' as number 3; it must be text"),
])
def test_each_field_holds_its_kind(tmp_path, record, problem):
    path = tmp_path / "mmlu.jsonl"
    path.write_bytes(json_lines([MMLU[0], {**MMLU[1], **record}, MMLU[2]]))
    if problem is None:
        assert len(load_records("mmlu", str(path))) == 3
        return
    with pytest.raises(BrokenFile) as err:
        load_records("mmlu", str(path))
    assert str(err.value) == (
        f"{path}: {problem}; each record of 'mmlu' needs question (text), subject (text), choices (a list of texts), answer (a whole number)"
    )


@pytest.mark.parametrize(("label", "accepted"), [(None, True), ("2", True), (2, True), (2.5, False), ([2], False)])
def test_a_label_may_be_missing_a_value(tmp_path, label, accepted):
    path = tmp_path / "piqa.jsonl"
    path.write_bytes(json_lines([{"goal": "g", "sol1": "a", "sol2": "b", "label": label}]))
    if accepted:
        load_records("piqa", str(path))
    else:
        with pytest.raises(BrokenFile, match=r"line 1 has 'label' as .*; it must be a label \(text or a whole number\)"):
            load_records("piqa", str(path))


@pytest.mark.parametrize(("text", "problem"), [
    ('{"prompt": "a"}\n\n{"prompt": "b"}', None),  # blank lines and a last line without its newline
    ('{"prompt": "a"}\n{"prompt": "b', "is cut short: its last line (2) stops in the middle of a record"),
    ('{"prompt": "a"}\n{"prompt": "b\n', "is not JSON lines: line 2 is not one JSON record (Unterminated string starting at column 12)"),
    ('{\n  "prompt": "a"\n}\n', "is not JSON lines: line 1 is not one JSON record (Expecting property name enclosed in double quotes at column 2)"),
    ('{"prompt": "a"}\n["b"]\n', "line 2 holds a JSON list, not a record (a JSON object)"),
    ('{"prompt": "a", "n": 1}\n{"prompt": "b", "n": "1"}\n', "line 2 has 'n' as text where line 1 has number"),
    ('{"prompt": "a", "n": 1}\n{"prompt": "b", "n": 1.5}\n', None),  # numbers are one kind
    ("", "is empty: it holds no records"),
    ("\n \n", "is empty: it holds no records"),
])
def test_json_lines_rules(tmp_path, text, problem):
    records = read_by_rule(tmp_path / "humaneval.jsonl", "humaneval", text, problem)
    if problem is None:
        assert [r["prompt"] for r in records] == ["a", "b"]


def read_by_rule(path: Path, dataset: str, text: str, problem: str | None) -> list | None:
    """`text` written to `path`, read as `dataset`'s file: its records when `problem` is None, else refused
    with a line that starts with the path and `problem`, then `;` and what to do."""
    path.write_text(text)
    if problem is None:
        return load_records(dataset, str(path))
    with pytest.raises(BrokenFile, match="^" + re.escape(f"{path}: {problem};")):
        load_records(dataset, str(path))
    return None


@pytest.mark.parametrize(("text", "problem"), [
    ('sentence1,sentence2,score\n"a, b",c,1\n', None),  # a quoted delimiter is one cell
    ("sentence1,sentence2,score\na,b,c,1\n", "line 2 has 4 cells and the header 3"),
    ("sentence1,sentence2,score\na,b\n", "line 2 has 2 cells and the header 3"),
    ("sentence1,sentence2\na,b\n", "has no column 'score' (its columns: sentence1, sentence2)"),
    ("sentence1,sentence2,score\na,b,1e0\n", None),
    ("sentence1,sentence2,score\na,b,high\n", "line 2 has 'score' as 'high'; it must be a number"),
    ("sentence1,sentence2,score\na,,1\n", "line 2 has no value for 'sentence2'"),
    ("sentence1,sentence1,score\na,b,1\n", "has a header with a name twice or an empty name (sentence1,sentence1,score)"),
])
def test_csv_rules(tmp_path, text, problem):
    records = read_by_rule(tmp_path / "stsb.csv", "stsb", text, problem)
    if problem is None:
        assert len(records) == 1


def test_other_encodings_and_a_directory_are_named(tmp_path):
    path = tmp_path / "humaneval.jsonl"
    path.write_bytes('{"prompt": "a"}\n{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(BrokenFile, match=r"humaneval.jsonl: is not UTF-8 text: line 2 holds byte 0xe9; save it as UTF-8"):
        load_records("humaneval", str(path))
    path.write_bytes('{"prompt": "caf\u00e9"}\n'.encode("utf-16"))
    with pytest.raises(BrokenFile, match=r"humaneval.jsonl: is not UTF-8 text: line 1 holds byte 0xff"):
        load_records("humaneval", str(path))
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(BrokenFile, match=r"dir.jsonl: is a directory, not a data file"):
        load_records("humaneval", str(tmp_path / "dir.jsonl"))
    columns = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{"text": 3}]), columns)
    (tmp_path / "wiki.parquet").write_bytes(columns.getvalue())
    with pytest.raises(BrokenFile, match=r"wiki.parquet: has the column 'text' of type int64; it must hold text"):
        load_records("wiki", str(tmp_path / "wiki.parquet"))


@pytest.mark.parametrize(("content", "expected"), [
    ("not json\n", "is not JSON lines: line 1 is not one JSON record (Expecting value at column 1); write one whole JSON object per line "
                   "(a pretty-printed file is not JSON lines)"),
    ("", "is empty: it holds no records; give a file that holds the records of 'humaneval'"),
])
def test_a_data_file_that_is_not_json_lines_or_empty_is_one_line_before_any_work(tmp_path, capsys, no_model_loading, content, expected):
    path = tmp_path / "humaneval.jsonl"
    path.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--config", str(ROOT / "configs" / "counts_embedded.yaml"), "--model.model", "tiny-llama",
              "--data.init_args.datasets", "[humaneval]", "--data.init_args.data_files", f"{{humaneval: {path}}}",
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [f"error: {path}: {expected}"]
    assert not (tmp_path / "runs").exists()
