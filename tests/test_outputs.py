"""Result files: written atomically, never overwritten, and readable as the user's umask allows."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
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


# ---- a full disk, and a kill in the middle of a write: nothing half-written, nothing lost


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    outputs.write_text(tmp_path / "s.md", "old")
    monkeypatch.setattr(os, "fsync", no_space)  # the disk fills while the new content is written
    with pytest.raises(outputs.NoSpaceLeft, match=rf"^no space left on the disk of {tmp_path}/s.md: free some space or choose another directory"):
        outputs.write_text(tmp_path / "s.md", "new", overwrite=True)
    with pytest.raises(outputs.NoSpaceLeft):
        outputs.write_json(tmp_path / "r.json", {"x": 1})
    assert (tmp_path / "s.md").read_text() == "old" and os.listdir(tmp_path) == ["s.md"]
    with pytest.raises(outputs.NoSpaceLeft), outputs.staged_dir(tmp_path / "model") as staged:  # a directory written whole, or not at all
        (staged / "config.json").write_text("{}")
        no_space()
    assert os.listdir(tmp_path) == ["s.md"]


def test_a_full_disk_in_a_command_is_one_line_and_leaves_no_half_report(tmp_path, monkeypatch, capsys):
    from lit_activation.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "counts.json").write_text("{}")
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(run), "--output", str(tmp_path / "out")])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and line.startswith(f"error: no space left on the disk of {tmp_path}/out/version_0/report.md: ")
    assert list((tmp_path / "out").iterdir()) == []  # no version holds half a report


@pytest.mark.parametrize(("free", "refused"), [(outputs.MIN_FREE_BYTES - 1, True), (outputs.MIN_FREE_BYTES, False)])
def test_a_disk_without_free_space_is_refused_before_any_work(tmp_path, monkeypatch, free, refused):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 30, (1 << 30) - free, free))
    if refused:
        with pytest.raises(outputs.NoSpaceLeft, match=rf"^log dir {tmp_path}/runs: no space left on its disk \({free} bytes free\)"):
            outputs.check_can_create(tmp_path / "runs", "log dir")
    else:
        outputs.check_can_create(tmp_path / "runs", "log dir")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs, where the machine lets this process mount one (root with the capability)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("no tmpfs can be mounted here: the full disk is simulated by the ENOSPC tests above")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_really_full_disk_leaves_what_was_written_before(small_disk):
    outputs.write_json(small_disk / "counts.json", {"x": 1})
    with pytest.raises(outputs.NoSpaceLeft, match=f"no space left on the disk of {small_disk}/big.json"):
        outputs.write_json(small_disk / "big.json", {"x": "y" * 200_000})
    assert json.loads((small_disk / "counts.json").read_text()) == {"x": 1}
    assert os.listdir(small_disk) == ["counts.json"]  # no staging file is left filling the disk


KILLED_MID_WRITE = """
import os, sys, time
from pathlib import Path
from lit_activation import outputs
path, marker = Path(sys.argv[1]), Path(sys.argv[2])
def stall(fd):  # the new content is in the staging file, not yet renamed into place: killed here
    marker.write_text("writing")
    time.sleep(600)
os.fsync = stall
outputs.write_json(path, {"new": "x" * 100_000}, overwrite=True)
"""


def test_a_kill_in_the_middle_of_a_write_leaves_the_old_file_whole(tmp_path):
    path, marker = tmp_path / "results.json", tmp_path / "marker"
    outputs.write_json(path, {"old": 1})
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(path), str(marker)])
    try:
        while not marker.exists():  # the child either reaches the write (and waits there) or ends
            assert child.poll() is None, "the writer ended before its write"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert json.loads(path.read_text()) == {"old": 1}  # the old file, whole
    left = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("results.json", "marker"))
    assert len(left) == 1 and left[0].startswith(".results.json.") and left[0].endswith(".tmp")  # hidden: no reader takes it for a result
    outputs.write_json(path, {"new": 2}, overwrite=True)  # the next run writes as if nothing happened
    assert json.loads(path.read_text()) == {"new": 2}
