"""Two CPU processes (DDP, gloo) give the same numbers as one: counts, LLMDcos, STS."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from naive import naive_means, per_layer
from scipy import stats
from tolerant import (
    assert_decades_clear,
    assert_distinct,
    assert_hist_close,
    gap_threshold,
    layer_parts,
    near_edges,
    near_threshold,
    numpy_histogram,
    parts_of,
)

from lit_activation.data.datamodule import ActivationDataModule

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
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    return tmp_path / name / "version_0"


def data_args(mode: str, datasets: list[str], n: int, batch: int, files: dict[str, str], callback: str, max_length: int = 40) -> list[str]:
    """CLI arguments for an ActivationDataModule run with one analysis callback."""
    return [
        "--data", "lit_activation.data.datamodule.ActivationDataModule", "--data.mode", mode,
        "--data.datasets", f"[{', '.join(datasets)}]", "--data.num_samples", str(n), "--data.batch_size", str(batch),
        "--data.max_length", str(max_length), "--data.data_files", json.dumps({k: files[k] for k in datasets}),
        "--trainer.callbacks+", callback,
    ]


COUNTS_DATA = {"num_samples": 7, "batch_size": 2, "max_length": 160}  # boolq rows padded, mmlu rows cut or padded


def counts_args(files: dict[str, str], gamma: float) -> list[str]:
    n, batch, length = COUNTS_DATA.values()
    counts = data_args("single", ["boolq", "mmlu"], n, batch, files, "lit_activation.callbacks.counts.ActivationCounts", length)
    return [*counts, "--trainer.callbacks.gamma", repr(gamma)]


def test_counts_two_processes_equal_one(tmp_path, bench_files):
    # The reference: naive means of the same samples. γ sits in a gap of them, and a histogram bin
    # may differ only for a value they put within rounding of its edge (usually none: then exact).
    means, layer_of, n_layers = naive_means(["boolq", "mmlu"], bench_files, COUNTS_DATA)
    dm = ActivationDataModule(["boolq", "mmlu"], tokenizer="tiny-llama", data_files=bench_files, **COUNTS_DATA)
    dm.setup()
    for d in range(2):  # precondition: rows of different lengths share a batch (the padded path runs)
        rows = [g.rows[0] for g in dm.groups if g.datasets[0] == d]
        assert any(len(rows[i]) != len(rows[i + 1]) for i in range(0, len(rows) - 1, 2)), f"dataset {d}: no batch is padded"
    gamma = gap_threshold([p for d in means.values() for p in parts_of(d)], 0.5)
    one = json.loads((cli(tmp_path, "one", 1, counts_args(bench_files, gamma)) / "counts.json").read_text())
    two = json.loads((cli(tmp_path, "two", 2, counts_args(bench_files, gamma)) / "counts.json").read_text())
    for name in ("boolq", "mmlu"):
        a, b = one["datasets"][name], two["datasets"][name]
        values = per_layer(means[name], layer_of, n_layers)
        parts = layer_parts(means[name], layer_of, n_layers)
        assert a["n_samples"] == b["n_samples"] == 7  # 7 samples, batch 2: ranks get uneven batches
        assert a["layer_counts"] == b["layer_counts"] == [int((v > gamma).sum()) for v in values]
        assert a["module_counts"] == b["module_counts"]
        # the runs' means differ only by the order in which non-negative batch sums are added
        # (relative rounding): their decades agree unless an extreme sits next to a power of ten
        assert_decades_clear(torch.cat(values))
        hist, other = a["log10_histogram"], b["log10_histogram"]
        assert (hist["lo"], hist["hi"], hist["zeros"]) == (other["lo"], other["hi"], other["zeros"])
        lo, hi, bins = hist["lo"], hist["hi"], len(hist["counts"][0])
        slack = [near_edges(p, lo, hi, bins) for p in parts]
        assert_hist_close(other["counts"], hist["counts"], slack)
        for run in (hist, other):
            assert_hist_close(run["counts"], [numpy_histogram(v, lo, hi, bins) for v in values], slack)
        width = (hi - lo) / bins
        for q, entry in a["quantile_counts"].items():
            theirs = b["quantile_counts"][q]
            if not any(k.any() for k in slack):  # no value near an edge: the thresholds and their counts are identical
                assert entry == theirs
            # a threshold is a bin edge; values moved across edges can move it by one bin at most
            assert abs(math.log10(entry["threshold"]) - math.log10(theirs["threshold"])) <= width * (1 + 1e-9)
            for run in (entry, theirs):  # each run's counts at its own threshold, against plain counting
                t = run["threshold"]
                for layer, (v, p) in enumerate(zip(values, parts, strict=True)):
                    assert abs(run["layer_counts"][layer] - int((v > t).sum())) <= near_threshold(p, t), (name, q, layer)


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
