"""`report` on run directories whose files were damaged after the run wrote them (Hypothesis): a file cut
short, random bytes, another encoding, a field taken out or of another kind. Each gives a report, or one
`error:` line naming the file, never a traceback."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lit_activation.cli import main
from lit_activation.pruning.comparison import HEADER
from tests.helpers.damage import damaged_bytes, damaged_json
from tests.report.test_report import FALLING, compare_run, counts_run, holding_llmdcos, sts_run

FUZZ = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _pruned_run(path: Path) -> Path:
    record = {"model": "m", "method": "activation", "target_sparsity": 0.5, "calibration": {"dataset": "mmlu", "seed": 0}}
    (path / "pruning.json").write_text(json.dumps(record))
    (path / "zeroshot.json").write_text(json.dumps({"protocol": "paper", "tasks": ["mmlu"], "results": {"mmlu": {"acc": 0.5, "n": 256}}}))
    return path


BUILDERS = {
    "counts.json": lambda p: counts_run(p, {k: v[:6] for k, v in FALLING.items()}),
    "llmdcos.json": holding_llmdcos,
    "sts.json": lambda p: sts_run(p, +1, hidden_layer_sum=[0.1] * 40, hidden_spearman=0.2),
    "results.csv": lambda p: compare_run(p, {"uniform": [10.0, 10.1], "activation": [9.0, 9.1]}, zeroshot={"mmlu": {"acc": 0.5}}),
    "comparison.json": lambda p: compare_run(p, {"uniform": [10.0, 10.1], "activation": [9.0, 9.1]}, zeroshot={"mmlu": {"acc": 0.5}}),
    "pruning.json": _pruned_run,
    "zeroshot.json": _pruned_run,
}


@pytest.fixture(scope="module")
def valid_runs(tmp_path_factory) -> dict[str, Path]:
    """One valid run dir per damaged file, built once."""
    root = tmp_path_factory.mktemp("valid")
    runs = {}
    for name, build in BUILDERS.items():
        (root / name).mkdir()
        runs[name] = build(root / name)
    return runs


def report_of(run: Path, file: str, damaged: bytes, capsys) -> None:
    """Report on a copy of `run` with `file` replaced by `damaged`: a report, or one line naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(run, Path(tmp) / "run"))
        (copy / file).write_bytes(damaged)
        capsys.readouterr()
        try:
            main(["report", str(copy), "--output", str(Path(tmp) / "out"), "--resamples", "100"])
        except SystemExit as exit_:
            err = capsys.readouterr().err.strip().splitlines()
            assert exit_.code == 2 and len(err) == 1 and err[0].startswith(f"error: {copy / file}: "), err
            assert not (Path(tmp) / "out").exists()  # refused before any work
        else:
            assert (Path(tmp) / "out" / "version_0" / "report.md").is_file()


@pytest.mark.parametrize("file", [f for f in BUILDERS if f.endswith(".json")])
@FUZZ
@given(data=st.data())
def test_a_damaged_run_file_gives_a_report_or_one_line_naming_it(valid_runs, capsys, file, data):
    original = json.loads((valid_runs[file] / file).read_text())
    report_of(valid_runs[file], file, data.draw(damaged_json(original)), capsys)


@FUZZ
@given(data=st.data())
def test_a_damaged_results_table_gives_a_report_or_one_line_naming_it(valid_runs, capsys, data):
    run = valid_runs["results.csv"]
    original = (run / "results.csv").read_bytes()
    assert original.decode().splitlines()[0] == ",".join(HEADER)
    report_of(run, "results.csv", data.draw(damaged_bytes(original)), capsys)
