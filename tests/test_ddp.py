"""Two CPU processes (DDP, gloo) give the same numbers as one: counts, LLMDcos, STS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ddp


def cli(tmp_path: Path, name: str, devices: int, args: list[str]) -> Path:
    """Run `python -m lit_activation predict` with `devices` CPU processes; return its run dir."""
    strategy = ["--trainer.strategy", "ddp"] if devices > 1 else []
    cmd = [
        sys.executable, "-m", "lit_activation", "predict", "--model.model", "tiny-llama",
        "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), *strategy,
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.name", name, *args,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    return tmp_path / name / "version_0"


def data_args(mode: str, datasets: list[str], n: int, batch: int, files: dict[str, str], callback: str) -> list[str]:
    """CLI arguments for an ActivationDataModule run with one analysis callback."""
    return [
        "--data", "lit_activation.data.datamodule.ActivationDataModule", "--data.mode", mode,
        "--data.datasets", f"[{', '.join(datasets)}]", "--data.num_samples", str(n), "--data.batch_size", str(batch),
        "--data.max_length", "40", "--data.data_files", json.dumps({k: files[k] for k in datasets}),
        "--trainer.callbacks+", callback,
    ]


def counts_args(files: dict[str, str]) -> list[str]:
    counts = data_args("single", ["boolq", "mmlu"], 7, 2, files, "lit_activation.callbacks.counts.ActivationCounts")
    return [*counts, "--trainer.callbacks.gamma", "0.02"]


def test_counts_two_processes_equal_one(tmp_path, bench_files):
    one = json.loads((cli(tmp_path, "one", 1, counts_args(bench_files)) / "counts.json").read_text())
    two = json.loads((cli(tmp_path, "two", 2, counts_args(bench_files)) / "counts.json").read_text())
    for name in ("boolq", "mmlu"):
        a, b = one["datasets"][name], two["datasets"][name]
        assert a["n_samples"] == b["n_samples"] == 7  # 7 samples, batch 2: ranks get uneven batches
        assert a["layer_counts"] == b["layer_counts"]
        assert a["module_counts"] == b["module_counts"]
        assert a["log10_histogram"] == b["log10_histogram"]
        assert a["quantile_counts"] == b["quantile_counts"]


def test_llmdcos_two_processes_equal_one(tmp_path, bench_files):
    args = data_args("pairs", ["boolq", "gsm8k"], 5, 1, bench_files, "lit_activation.callbacks.llmdcos.LLMDcos")
    one = json.loads((cli(tmp_path, "one", 1, args) / "llmdcos.json").read_text())
    two = json.loads((cli(tmp_path, "two", 2, args) / "llmdcos.json").read_text())
    # one group per batch: identical batches on either layout, so the cosines are bit-identical
    assert one["llmdcos"] == two["llmdcos"]
    assert one["matrix"] == two["matrix"]


def test_sts_two_processes_equal_one(tmp_path, bench_files):
    args = data_args("sts", ["sick"], 9, 2, bench_files, "lit_activation.callbacks.sts.STSCorrelation")
    one = json.loads((cli(tmp_path, "one", 1, args) / "sts.json").read_text())
    two = json.loads((cli(tmp_path, "two", 2, args) / "sts.json").read_text())
    # batches differ (ranks split them), so padding widths differ: equal to float precision
    assert one["n_pairs"] == two["n_pairs"] == 9
    assert abs(one["spearman"] - two["spearman"]) < 1e-6
    for a, b in zip(one["per_layer_spearman"], two["per_layer_spearman"], strict=True):
        assert abs(a - b) < 1e-6
