"""Result files: written atomically, never overwritten, and readable as the user's umask allows."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lit_activation import outputs

WRITE_UNDER_UMASK = """
import os, sys
from pathlib import Path
os.umask(int(sys.argv[2], 8))  # this child process's own umask
from lit_activation import outputs
out = Path(sys.argv[1])
outputs.write_json(out / "a.json", {"x": 1})
outputs.write_text(out / "b.md", "x")
outputs.append_csv_row(out / "c.csv", ["x"], [1])
(outputs.staging_dir(out / "d") / "f").write_text("x")
"""


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [("022", 0o644, 0o755), ("077", 0o600, 0o700)])
def test_results_get_the_mode_the_umask_allows(tmp_path, umask, file_mode, dir_mode):
    subprocess.run([sys.executable, "-c", WRITE_UNDER_UMASK, str(tmp_path), umask], check=True)
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir() if p.is_file()}
    assert files == {"a.json": file_mode, "b.md": file_mode, "c.csv": file_mode}
    (staged,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert staged.name.startswith(".d.") and stat.S_IMODE(staged.stat().st_mode) == dir_mode


def test_a_result_is_never_overwritten_and_no_staging_file_is_left(tmp_path):
    outputs.write_json(tmp_path / "r.json", {"x": 1})
    with pytest.raises(FileExistsError, match="never overwritten"):
        outputs.write_json(tmp_path / "r.json", {"x": 2})
    assert (tmp_path / "r.json").read_text() == '{\n  "x": 1\n}\n'
    assert os.listdir(tmp_path) == ["r.json"]


def test_a_failed_write_leaves_the_old_file_and_no_staging_file(tmp_path, monkeypatch):
    outputs.write_text(tmp_path / "s.md", "old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        outputs.write_text(tmp_path / "s.md", "new", overwrite=True)
    assert (tmp_path / "s.md").read_text() == "old" and sorted(os.listdir(tmp_path)) == ["s.md"]


def test_a_directory_that_could_not_be_made_is_refused_naming_the_option(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(FileExistsError, match=rf"^save_dir {tmp_path}/a-file/model: {tmp_path}/a-file is a file, not a directory; choose another save_dir$"):
        outputs.check_can_create(tmp_path / "a-file" / "model", "save_dir")
    outputs.check_can_create(tmp_path / "new" / "deeper", "save_dir")  # missing parents are made later
    assert not (tmp_path / "new").exists()  # a check creates nothing


def test_a_read_only_parent_is_refused(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    # os.access as the answer of a read-only directory: root (as CI may run) may write anywhere
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(PermissionError, match=rf"^save_dir {locked}/model cannot be written: {locked} is not writable; choose another save_dir$"):
        outputs.check_can_create(locked / "model", "save_dir")
    outputs.check_can_create(tmp_path / "elsewhere", "save_dir")


@pytest.mark.slow
def test_save_dir_and_report_output_are_checked_before_any_work(tmp_path, capsys, no_model_loading):
    from lit_activation.cli import main

    (tmp_path / "f").write_text("x")
    config = Path(__file__).parents[1] / "configs" / "prune_uniform_embedded.yaml"
    with pytest.raises(SystemExit) as exit_:
        main(["validate", "--config", str(config), "--model.model", "tiny-llama", "--pruning.save_dir", str(tmp_path / "f" / "m"),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert exit_.value.code == 2 and f"error: save_dir {tmp_path}/f/m: {tmp_path}/f is a file, not a directory" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "counts.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(run), "--output", str(tmp_path / "f")])
    expected = f"error: --output {tmp_path}/f: {tmp_path}/f is a file, not a directory; choose another --output"
    assert exit_.value.code == 2 and capsys.readouterr().err.strip() == expected
