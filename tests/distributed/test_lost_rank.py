"""A rank that dies mid-run (SIGKILL, as the OOM killer does): the other stops within a bounded time
with one line naming it, what was written stays intact, and a resume gives an uninterrupted run's results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import child_env
from tests.helpers.processes import cli, counts_args, write_model

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


def run(tmp_path: Path, args: list[str], devices: int, timeout: float = 600) -> subprocess.CompletedProcess:
    """`lit-activation predict` on `devices` new processes; `timeout` guards against a hang (gloo's own
    collective timeout is 30 min), it measures nothing."""
    command = [
        sys.executable, "-m", "lit_activation", "predict", "--trainer.accelerator", "cpu", "--trainer.devices", str(devices),
        *(["--trainer.strategy", "ddp"] if devices > 1 else []), "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path), *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=child_env(LIT_ACTIVATION_HEARTBEAT_S="0.5"), timeout=timeout)


def test_a_lost_rank_is_named_its_peer_stops_and_the_run_resumes(tmp_path, bench_files):
    model = str(write_model(tmp_path / "model"))
    counts = [*counts_args(bench_files, 0.05), "--model.model", model]
    cli(tmp_path, "whole", counts_args(bench_files, 0.05), model=model)  # the uninterrupted run (the session's pool; it checks the exit status)

    progress = tmp_path / "cut" / "version_0" / "progress" / "counts"
    kill = ["--trainer.callbacks+", "tests.helpers.probe.KillRank", "--trainer.callbacks.rank", "1", "--trainer.callbacks.dataset", "1",
            "--trainer.callbacks.progress_dir", str(progress)]
    cut = run(tmp_path, [*counts, "--trainer.logger.init_args.name", "cut", *kill], 2, timeout=300)
    errors = [line for line in cut.stderr.splitlines() if line.startswith("error:")]
    assert cut.returncode != 0 and len(errors) == 1, cut.stderr[-3000:]
    assert errors[0].startswith("error: lost rank 1 of 2 (") and "--resume " in errors[0], errors[0]
    # the peer was ended by the heartbeat's watcher (the line above), not by a collective's timeout
    assert "timed out" not in cut.stderr.lower() and "timeout" not in cut.stderr.lower(), cut.stderr[-3000:]
    assert sorted(p.name for p in progress.iterdir()) == ["0000.json"]  # the dataset finished before the loss, intact
    assert not (tmp_path / "cut" / "version_0" / "counts.json").exists()

    cli(tmp_path, "cut", [*counts_args(bench_files, 0.05), "--resume", "last"], 2, "ddp", model=model)  # the resume: any two processes
    got, expected = (json.loads((tmp_path / name / "version_0" / "counts.json").read_text())["datasets"] for name in ("cut", "whole"))
    for name in ("boolq", "mmlu"):
        assert got[name]["layer_counts"] == expected[name]["layer_counts"] and got[name]["module_counts"] == expected[name]["module_counts"]
        assert got[name]["n_samples"] == expected[name]["n_samples"] == 5
