"""Two CPU processes (gloo) give the same numbers as one: counts, LLMDcos, STS.

Two layouts: DDP (each rank scores other batches, shown by which batches each rank scored) and
sharded (ModelParallelStrategy: FSDP2, both ranks score every batch, each its own weight rows).
The one-process references run once per module. Pruning on shards and larger layouts:
tests/test_sharding.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from lit_activation.data.datamodule import ActivationDataModule
from tests.helpers.naive import naive_means, per_layer
from tests.helpers.processes import SHARDED, probe_records
from tests.helpers.processes import cli as run_cli
from tests.helpers.tolerant import (
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

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


STRATEGIES = {"one": (1, None), "ddp": (2, "ddp"), "sharded": (2, SHARDED)}


def cli(tmp_path: Path, name: str, layout: str, args: list[str], subcommand: str = "predict", config: Path | None = None) -> Path:
    """Run `python -m lit_activation <subcommand>` on 1 CPU process (layout 'one') or 2; return its run dir."""
    devices, strategy = STRATEGIES[layout]
    return run_cli(tmp_path, name, args, devices, strategy, subcommand, config)[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, bench_files) -> dict:
    """The one-process runs every layout is compared with, and the γ of the counts runs."""
    root = tmp_path_factory.mktemp("one")
    means, layer_of, n_layers = naive_means(["boolq", "mmlu"], bench_files, COUNTS_DATA)
    gamma = gap_threshold([p for d in means.values() for p in parts_of(d)], 0.5)
    return {
        "gamma": gamma, "means": (means, layer_of, n_layers),
        "counts": json.loads((cli(root, "counts", "one", counts_args(bench_files, gamma)) / "counts.json").read_text()),
        "llmdcos": json.loads((cli(root, "llmdcos", "one", LLMDCOS(bench_files)) / "llmdcos.json").read_text()),
        "sts": json.loads((cli(root, "sts", "one", STS(bench_files)) / "sts.json").read_text()),
    }


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


LLMDCOS = lambda files: data_args("pairs", ["boolq", "gsm8k"], 5, 1, files, "lit_activation.callbacks.llmdcos.LLMDcos")  # noqa: E731
STS = lambda files: data_args("sts", ["sick"], 9, 2, files, "lit_activation.callbacks.sts.STSCorrelation")  # noqa: E731
LAYOUTS = ["ddp", "sharded"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_counts_two_processes_equal_one(tmp_path, bench_files, reference, layout):
    # The reference: naive means of the same samples. γ sits in a gap of them, and a histogram bin
    # may differ only for a value they put within rounding of its edge (usually none: then exact).
    means, layer_of, n_layers = reference["means"]
    gamma = reference["gamma"]
    dm = ActivationDataModule(["boolq", "mmlu"], tokenizer="tiny-llama", data_files=bench_files, **COUNTS_DATA)
    dm.setup()
    for d in range(2):  # precondition: rows of different lengths share a batch (the padded path runs)
        rows = [g.rows[0] for g in dm.groups if g.datasets[0] == d]
        assert any(len(rows[i]) != len(rows[i + 1]) for i in range(0, len(rows) - 1, 2)), f"dataset {d}: no batch is padded"
    probe = ["--trainer.callbacks+", "tests.helpers.probe.ShardProbe", "--trainer.callbacks.out_dir", str(tmp_path / "probe")]
    batches = ["--trainer.callbacks+", "tests.helpers.probe.BatchProbe", "--trainer.callbacks.out_dir", str(tmp_path / "batches")]
    one = reference["counts"]
    two = json.loads((cli(tmp_path, "two", layout, [*counts_args(bench_files, gamma), *probe, *batches]) / "counts.json").read_text())
    ranks = probe_records(tmp_path / "probe", 2)
    scored = [set(groups) for groups in probe_records(tmp_path / "batches", 2)]
    if layout == "ddp":  # each group scored by exactly one rank, every group by some rank
        assert scored[0] and scored[1] and not scored[0] & scored[1] and scored[0] | scored[1] == set(range(14))
    else:  # a shard group scores the same batches, each rank its own rows
        assert scored[0] == scored[1] == set(range(14))
    for name, sizes in ranks[0].items():
        local_sizes = [rank[name] for rank in ranks]
        if layout == "sharded":  # each rank holds half of every decoder weight and of the accumulator
            assert [s["weight_local"] * 2 for s in local_sizes] == [sizes["weight"]] * 2, name
            assert [s["state"] * 2 for s in local_sizes] == [sizes["weight"]] * 2, name
        else:  # DDP replicates both
            assert [s["weight_local"] for s in local_sizes] == [s["state"] for s in local_sizes] == [sizes["weight"]] * 2, name
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
        # No exact equality between the runs here, and no test that applies only sometimes: with ~25k
        # means per layer, hundreds sit within the rounding bands of one of the 101 bin edges (~300 here),
        # so bins and quantile counts may differ by exactly those values. Every check below always runs.
        for q, entry in a["quantile_counts"].items():
            theirs = b["quantile_counts"][q]
            # a threshold is a bin edge; values moved across edges can move it by one bin at most
            assert abs(math.log10(entry["threshold"]) - math.log10(theirs["threshold"])) <= width * (1 + 1e-9)
            for run in (entry, theirs):  # each run's counts at its own threshold, against plain counting
                t = run["threshold"]
                for layer, (v, p) in enumerate(zip(values, parts, strict=True)):
                    assert abs(run["layer_counts"][layer] - int((v > t).sum())) <= near_threshold(p, t), (name, q, layer)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_llmdcos_two_processes_equal_one(tmp_path, bench_files, reference, layout):
    one = reference["llmdcos"]
    two = json.loads((cli(tmp_path, "two", layout, LLMDCOS(bench_files)) / "llmdcos.json").read_text())
    assert one["llmdcos"].keys() == two["llmdcos"].keys()
    for pair in one["llmdcos"]:
        np.testing.assert_allclose(two["llmdcos"][pair], one["llmdcos"][pair], rtol=0, atol=1e-6)
    np.testing.assert_allclose(two["matrix"], one["matrix"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sts_two_processes_equal_one(tmp_path, bench_files, reference, layout):
    one = reference["sts"]
    two = json.loads((cli(tmp_path, "two", layout, STS(bench_files)) / "sts.json").read_text())
    assert one["n_pairs"] == two["n_pairs"] == 9
    assert one["gold"] == two["gold"]
    np.testing.assert_allclose(two["layer_sum"], one["layer_sum"], rtol=1e-5)
    # each run reports scipy's ρ of its own values; with no near-ties the ranks agree, so ρ does
    for run in (one, two):
        assert run["spearman"] == stats.spearmanr(run["layer_sum"], run["gold"]).statistic
    assert_distinct(np.array(one["layer_sum"]), rel=1e-4)
    assert one["spearman"] == two["spearman"]
