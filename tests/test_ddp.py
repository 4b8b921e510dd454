"""Two CPU processes (DDP, gloo) give the same numbers as one: counts, LLMDcos, STS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from naive import naive_means, per_layer
from scipy import stats
from tolerant import REL, assert_distinct, assert_hist_close, gap_threshold, near_edges

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


def counts_args(files: dict[str, str], gamma: float) -> list[str]:
    counts = data_args("single", ["boolq", "mmlu"], 7, 2, files, "lit_activation.callbacks.counts.ActivationCounts")
    return [*counts, "--trainer.callbacks.gamma", repr(gamma)]


def test_counts_two_processes_equal_one(tmp_path, bench_files):
    # The reference: naive means of the same samples. γ sits in a gap of them, and a histogram bin
    # may differ only for a value they put within rounding of its edge (usually none: then exact).
    means, layer_of, n_layers = naive_means(["boolq", "mmlu"], bench_files, {"num_samples": 7, "max_length": 40})
    gamma = gap_threshold([m for d in means.values() for m in d.values()], 0.5)
    one = json.loads((cli(tmp_path, "one", 1, counts_args(bench_files, gamma)) / "counts.json").read_text())
    two = json.loads((cli(tmp_path, "two", 2, counts_args(bench_files, gamma)) / "counts.json").read_text())
    for name in ("boolq", "mmlu"):
        a, b = one["datasets"][name], two["datasets"][name]
        assert a["n_samples"] == b["n_samples"] == 7  # 7 samples, batch 2: ranks get uneven batches
        assert a["layer_counts"] == b["layer_counts"]
        assert a["module_counts"] == b["module_counts"]
        hist = a["log10_histogram"]
        assert (hist["lo"], hist["hi"], hist["zeros"]) == (b["log10_histogram"]["lo"], b["log10_histogram"]["hi"], b["log10_histogram"]["zeros"])
        values = per_layer(means[name], layer_of, n_layers)
        slack = [near_edges(v, hist["lo"], hist["hi"], len(hist["counts"][0])) for v in values]
        assert_hist_close(b["log10_histogram"]["counts"], hist["counts"], slack)
        for q, entry in a["quantile_counts"].items():
            other = b["quantile_counts"][q]
            if not sum(slack):  # no value near an edge: the thresholds and their counts are identical
                assert entry == other
            elif entry["threshold"] == other["threshold"]:
                near = [int(((v.double() - entry["threshold"]).abs() <= REL * entry["threshold"]).sum()) for v in values]
                assert all(abs(x - y) <= k for x, y, k in zip(entry["layer_counts"], other["layer_counts"], near, strict=True))


def test_llmdcos_two_processes_equal_one(tmp_path, bench_files):
    args = data_args("pairs", ["boolq", "gsm8k"], 5, 1, bench_files, "lit_activation.callbacks.llmdcos.LLMDcos")
    one = json.loads((cli(tmp_path, "one", 1, args) / "llmdcos.json").read_text())
    two = json.loads((cli(tmp_path, "two", 2, args) / "llmdcos.json").read_text())
    assert one["llmdcos"].keys() == two["llmdcos"].keys()
    for pair in one["llmdcos"]:
        np.testing.assert_allclose(two["llmdcos"][pair], one["llmdcos"][pair], rtol=0, atol=1e-6)
    np.testing.assert_allclose(two["matrix"], one["matrix"], rtol=0, atol=1e-6)


def test_sts_two_processes_equal_one(tmp_path, bench_files):
    args = data_args("sts", ["sick"], 9, 2, bench_files, "lit_activation.callbacks.sts.STSCorrelation")
    one = json.loads((cli(tmp_path, "one", 1, args) / "sts.json").read_text())
    two = json.loads((cli(tmp_path, "two", 2, args) / "sts.json").read_text())
    assert one["n_pairs"] == two["n_pairs"] == 9
    assert one["gold"] == two["gold"]
    np.testing.assert_allclose(two["layer_sum"], one["layer_sum"], rtol=1e-5)
    # each run reports scipy's ρ of its own values; with no near-ties the ranks agree, so ρ does
    for run in (one, two):
        assert run["spearman"] == stats.spearmanr(run["layer_sum"], run["gold"]).statistic
    assert_distinct(np.array(one["layer_sum"]), rel=1e-4)
    assert one["spearman"] == two["spearman"]
