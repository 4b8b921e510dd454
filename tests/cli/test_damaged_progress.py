"""`--resume` on a run whose progress/ was damaged after it was written (Hypothesis): each finished unit is
read back whole, or refused in one line naming its file before any model loads; and a refused resume
leaves the run as it was."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from lit_activation.cli import main
from lit_activation.files import BrokenFile
from lit_activation.resume import PROGRESS, check_progress
from tests.cli.test_resume import predict_args
from tests.helpers.damage import damaged_bytes, damaged_json

FUZZ = settings(max_examples=30, deadline=None)

RECORD = {"dataset": "humaneval", "result": {"n_samples": 6, "layer_counts": [3, 1], "quantile_counts": {}}}
TENSORS = {"index": torch.arange(2), "grams": torch.rand(2, 2, 4, 4, dtype=torch.float64), "gold": torch.rand(2, dtype=torch.float64)}


def progress_run(root: Path, counts: bytes, groups: bytes) -> Path:
    """A run dir whose progress/ holds one finished unit of each part, as the callbacks write them."""
    run = root / "version_0"
    (run / PROGRESS / "counts").mkdir(parents=True)
    (run / PROGRESS / "groups").mkdir()
    (run / PROGRESS / "counts" / "0000.json").write_bytes(counts)
    (run / PROGRESS / "groups" / "00000000.safetensors").write_bytes(groups)
    return run


def refused_or_read(run: Path, damaged: Path) -> None:
    """The property: check_progress refuses the damaged file naming it, in one line, or it reads back whole."""
    try:
        check_progress(run)
    except BrokenFile as err:
        assert err.path == damaged and str(err).startswith(f"{damaged}: ") and "\n" not in str(err)


def tensors_with_one_mistyped(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(sorted(TENSORS)))
    other = draw(st.sampled_from(["drop", "float", "int", "scalar", "short"]))
    damaged = dict(TENSORS)
    tensor = damaged.pop(name)
    if other != "drop":
        damaged[name] = {"float": tensor.double(), "int": tensor.long(), "scalar": tensor.flatten()[0].clone(), "short": tensor[:1].clone()}[other]
    return save(damaged)


@FUZZ
@given(data=st.data())
def test_a_damaged_json_unit_is_named_or_read_whole(data):
    damaged = data.draw(damaged_json(RECORD))
    with tempfile.TemporaryDirectory() as tmp:
        run = progress_run(Path(tmp), damaged, save(TENSORS))
        refused_or_read(run, run / PROGRESS / "counts" / "0000.json")


@FUZZ
@given(data=st.data())
def test_a_damaged_tensor_unit_is_named_or_read_whole(data):
    damaged = data.draw(st.one_of(damaged_bytes(save(TENSORS)), st.composite(tensors_with_one_mistyped)()))
    with tempfile.TemporaryDirectory() as tmp:
        run = progress_run(Path(tmp), json.dumps(RECORD).encode(), damaged)
        refused_or_read(run, run / PROGRESS / "groups" / "00000000.safetensors")


def test_the_undamaged_units_and_a_killed_write_s_staging_file_are_read(tmp_path):
    run = progress_run(tmp_path, json.dumps(RECORD).encode(), save(TENSORS))
    (run / PROGRESS / "counts" / ".0001.json.123.abc.tmp").write_bytes(b'{"dataset": "hum')  # a write killed before its rename
    check_progress(run)
    (run / PROGRESS / "notes.txt").write_text("x")
    with pytest.raises(BrokenFile, match=r"notes.txt: is not a part of a run's progress"):
        check_progress(run)


def test_resume_on_a_damaged_unit_is_one_line_before_the_model_loads_and_changes_nothing(tmp_path, capsys, monkeypatch, request):
    """End to end: a real run stopped with its progress/ kept, one unit cut short, then resumed."""
    monkeypatch.setattr("lit_activation.callbacks.base.Progress.clear", lambda self: None)  # progress/ stays, as in a killed run
    args = predict_args(tmp_path, "counts_embedded.yaml", "cut", "--data.init_args.datasets", "[humaneval]", "--data.init_args.num_samples", "2")
    main(args)
    run = tmp_path / "cut" / "version_0"
    unit = run / PROGRESS / "counts" / "0000.json"
    unit.write_bytes(unit.read_bytes()[:40])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    no_model_loading = request.getfixturevalue("no_model_loading")  # from here on
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--resume", str(run)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {unit}: is cut short: its JSON stops at line 3 before the object is complete; "
        "delete it and the progress files after it (their work is scored again), or start a new run"
    ]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing lost, nothing added
    unit.unlink()  # what the line says to do: the resume goes on, as far as loading the model
    with pytest.raises(no_model_loading):
        main([*args, "--resume", str(run)])
