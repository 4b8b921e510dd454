"""`lit-activation compare`: every finished run recorded at once, resumable after a kill in the middle
of a run with the same numbers as an uninterrupted sweep, every run from dense weights, never mixed
with other settings."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lit_activation.cli import build_cli
from lit_activation.pruning import comparison
from lit_activation.pruning.allocations import OnTheFlyCounts
from lit_activation.pruning.metrics import Wanda
from tests.helpers import child_env

pytestmark = pytest.mark.slow  # every test here runs whole sweeps

CONFIG = Path(__file__).parents[2] / "configs" / "compare_embedded.yaml"
SWEEP = """
allocations:
  - class_path: lit_activation.pruning.allocations.Uniform
  - class_path: lit_activation.pruning.allocations.Activation
    init_args:
      counts:
        class_path: lit_activation.pruning.allocations.OnTheFlyCounts
        init_args: {gamma: 1.0e-4, samples: 2, length: 16}
metrics: [Wanda]
sparsities: [0.5]
seeds: [0, 1]
"""
RUNS = ["dense", "uniform_wanda_s0.5_seed0", "activation_wanda_s0.5_seed0", "uniform_wanda_s0.5_seed1", "activation_wanda_s0.5_seed1"]


def arguments(tmp_path: Path, files: dict[str, str], out: str, *extra: str) -> list[str]:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    return [
        "--config", str(CONFIG), "--config", str(sweep), "--model.model", "tiny-llama",
        "--data.init_args.dataset", "wikitext2", "--data.init_args.data_files", files["wikitext2"],
        "--data.init_args.seqlen", "64", "--data.init_args.max_chunks", "2",
        "--pruning.calibration.dataset", "c4", "--pruning.calibration.files", files["c4"],
        "--pruning.calibration.samples", "4", "--pruning.calibration.seqlen", "32",
        "--trainer.enable_progress_bar", "false", "--output_dir", str(tmp_path / out), *extra,
    ]


def compare(tmp_path: Path, files: dict[str, str], out: str = "cmp", *extra: str) -> None:
    build_cli(["compare", *arguments(tmp_path, files, out, *extra)])


def rows(directory: Path) -> list[dict]:
    with open(directory / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def killed_inside(tmp_path: Path, files: dict[str, str], run_name: str) -> None:
    """Start the sweep in its own process, wait until `run_name` is halfway (pruned, not yet
    evaluated), then SIGKILL it: nothing of that run reaches results.csv."""
    marker = tmp_path / "halfway"
    env = child_env()
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.compare_child", run_name, str(marker), "--", *arguments(tmp_path, files, "cmp")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    while not marker.exists():
        assert child.poll() is None, f"the sweep ended before {run_name} was halfway: {child.stderr.read()[-3000:]}"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.ddp  # a second process (mark shared with the other multi-process tests)
def test_a_sweep_killed_inside_a_run_resumes_to_the_uninterrupted_numbers(tmp_path, bench_files, monkeypatch, capsys):
    compare(tmp_path, bench_files, "whole")  # the uninterrupted reference
    whole = {(r["method"], r["pruning_metric"], r["seed"]): float(r["perplexity"]) for r in rows(tmp_path / "whole")}
    killed_inside(tmp_path, bench_files, "uniform_wanda_s0.5_seed1")
    assert [(r["method"], r["seed"]) for r in rows(tmp_path / "cmp")] == [("dense", "0"), ("uniform", "0"), ("activation", "0")]
    counts = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["resolved_counts"]["activation"]

    def never(*args, **kwargs):
        raise AssertionError("the on-the-fly counts were computed again; the earlier run's should be reused")

    monkeypatch.setattr(OnTheFlyCounts, "layer_counts", never)
    capsys.readouterr()
    compare(tmp_path, bench_files)
    assert "(5 runs, 2 run now)" in capsys.readouterr().out
    resumed = rows(tmp_path / "cmp")
    assert [comparison.Run(r["method"], r["pruning_metric"], float(r["sparsity"]), int(r["seed"])).name for r in resumed] == RUNS
    for r in resumed:  # the same perplexities as without the kill (same computation, same inputs)
        assert float(r["perplexity"]) == pytest.approx(whole[(r["method"], r["pruning_metric"], r["seed"])], rel=1e-9), r
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["resolved_counts"]["activation"] == counts
    kept = [p.name for p in (tmp_path / "cmp" / "runs").iterdir() if ".interrupted-" in p.name]
    assert len(kept) == 1 and kept[0].startswith("uniform_wanda_s0.5_seed1.interrupted-")  # set aside, never deleted
    for name in RUNS[1:]:  # every run pruned a dense model: its zeros are exactly the ones it made
        record = json.loads((tmp_path / "cmp" / "runs" / name / "pruning.json").read_text())
        assert record["achieved_zero_fraction"] == pytest.approx(record["achieved_sparsity"], rel=1e-6), name
    compare(tmp_path, bench_files)
    assert "(5 runs, 0 run now)" in capsys.readouterr().out
    summary = (tmp_path / "cmp" / "summary.md").read_text()
    assert "| uniform + wanda |" in summary and "| activation + wanda |" in summary and "| dense |" in summary


def test_other_settings_in_the_same_output_dir_are_refused(tmp_path, bench_files):
    compare(tmp_path, bench_files, "cmp", "--seeds", "[0]")
    with pytest.raises(ValueError, match="holds a comparison with other settings \\(calibration\\)"):
        compare(tmp_path, bench_files, "cmp", "--seeds", "[0]", "--pruning.calibration.samples", "3")
    other = "[{class_path: lit_activation.pruning.allocations.Uniform}, {class_path: lit_activation.pruning.allocations.OWL, init_args: {lam: 0.1}}]"
    compare(tmp_path, bench_files, "cmp", "--seeds", "[0]", "--allocations", other)  # a new method joins
    with pytest.raises(ValueError, match="allocation owl"):
        compare(tmp_path, bench_files, "cmp", "--seeds", "[0]", "--allocations", other.replace("0.1", "0.2"))
    uniform = "[{class_path: lit_activation.pruning.allocations.Uniform}]"
    compare(tmp_path, bench_files, "cmp", "--seeds", "[0]", "--metrics", "[Wanda, Taylor]", "--allocations", uniform)  # a new metric joins
    with pytest.raises(ValueError, match="allocation metric taylor"):
        compare(tmp_path, bench_files, "cmp", "--seeds", "[0]", "--metrics", "[{class_path: Taylor, init_args: {target: log_prob}}]", "--allocations", uniform)
    assert [(r["method"], r["pruning_metric"]) for r in rows(tmp_path / "cmp")] == [
        ("dense", "-"), ("uniform", "wanda"), ("activation", "wanda"), ("owl", "wanda"), ("uniform", "taylor"),
    ]


def test_summary_math_by_hand():
    summary = comparison.summarize([
        {"method": "uniform", "pruning_metric": "wanda", "sparsity": "0.5", "perplexity": "10"},
        {"method": "uniform", "pruning_metric": "wanda", "sparsity": "0.5", "perplexity": "14"},
        {"method": "uniform", "pruning_metric": "taylor", "sparsity": "0.5", "perplexity": "9"},
        {"method": "dense", "pruning_metric": "-", "sparsity": "0.0", "perplexity": "5"},
    ])
    assert {(r["method"], r["mean"], round(r["std"], 6), r["runs"]) for r in summary} == {
        ("uniform + wanda", 12.0, 2.828427, 2), ("uniform + taylor", 9.0, 0.0, 1), ("dense", 5.0, 0.0, 1),
    }
    run = comparison.Run("owl", "taylor", 0.5, 1)
    assert comparison.progress(3, 5, run, [30.0, 90.0]) == "Compare: run 3 of 5: owl_taylor_s0.5_seed1, about 3 min left"
    with pytest.raises(ValueError, match="sparsity 1.0 is outside \\(0, 1\\)"):
        comparison.sweep([], [Wanda()], [1.0], [0])


def test_the_summary_table_states_mean_and_sample_std_and_marks_single_seeds():
    """Hand values: seeds 10 and 12 give mean 11, sample std √2; one seed shows no spread."""
    results = [
        {"method": "dense", "pruning_metric": "-", "sparsity": "0.0", "seed": "0", "perplexity": "5.0"},
        {"method": "uniform", "pruning_metric": "wanda", "sparsity": "0.5", "seed": "0", "perplexity": "10.0"},
        {"method": "uniform", "pruning_metric": "wanda", "sparsity": "0.5", "seed": "1", "perplexity": "12.0"},
        {"method": "owl", "pruning_metric": "taylor", "sparsity": "0.6", "seed": "0", "perplexity": "30.0"},
    ]
    table = comparison.markdown_table(comparison.summarize(results), "ppl").splitlines()
    assert table[2:] == [
        "| method | 50% | 60% |",
        "|---|---|---|",
        "| dense | 5.00 (0 %) | |",
        "| uniform + wanda | 11.00 ± 1.41 |  |",
        "| owl + taylor |  | 30.00 (1 seed) |",
    ]


@pytest.mark.parametrize(
    ("prepare", "error", "message"),
    [
        (lambda d: d.write_text("x"), FileExistsError, r"output_dir .*cmp is a file; give a directory"),
        (lambda d: (d.mkdir(), (d / "counts.json").write_text("{}")), FileExistsError, r"holds other files and no comparison \(results.csv, comparison.json\)"),
        (lambda d: (d.mkdir(), (d / "results.csv").write_text("run,ppl\n1,2\n")), ValueError, r"results.csv has columns \['run', 'ppl'\]; this version writes"),
        (lambda d: (d.mkdir(), (d / "comparison.json").write_text("{\n")), ValueError, r"comparison.json is not valid JSON"),
        (lambda d: (d.mkdir(), (d / "comparison.json").write_text("[]")), ValueError, r"comparison.json is not a comparison record"),
    ],
    ids=["a-file", "another-run", "other-columns", "corrupt-record", "not-a-record"],
)
def test_an_output_dir_that_is_no_comparison_is_refused_untouched_before_any_run(tmp_path, bench_files, no_model_loading, prepare, error, message):
    prepare(tmp_path / "cmp")
    before = {p.name: p.read_bytes() for p in (tmp_path / "cmp").iterdir()} if (tmp_path / "cmp").is_dir() else None
    with pytest.raises(error, match=message):
        compare(tmp_path, bench_files, "cmp", "--seeds", "[0]")
    assert before is None or {p.name: p.read_bytes() for p in (tmp_path / "cmp").iterdir()} == before


def test_an_empty_output_dir_is_a_new_comparison(tmp_path, bench_files):
    (tmp_path / "cmp").mkdir()
    uniform = "[{class_path: lit_activation.pruning.allocations.Uniform}]"
    compare(tmp_path, bench_files, "cmp", "--seeds", "[0]", "--sparsities", "[0.5]", "--allocations", uniform)
    assert [r["method"] for r in rows(tmp_path / "cmp")] == ["dense", "uniform"]


def test_what_a_run_would_refuse_is_refused_before_the_on_the_fly_counts_load_a_model(tmp_path, bench_files, no_model_loading, monkeypatch):
    """The on-the-fly counts load the dense model before any run's own checks: a counts length past
    the model's positions, or a zero-shot file without its fields, must stop the sweep before that."""
    def no_loading(*args, **kwargs):
        raise no_model_loading

    monkeypatch.setattr("lit_activation.pruning.comparison.load_causal_lm", no_loading)
    long_counts = "[{class_path: lit_activation.pruning.allocations.Activation, init_args: {counts: {class_path: OnTheFlyCounts, init_args: {length: 513}}}}]"
    with pytest.raises(ValueError, match=r"^pruning.allocation.init_args.counts.init_args.length is 513 tokens; 'tiny-llama' takes at most 512"):
        compare(tmp_path, bench_files, "cmp", "--seeds", "[0]", "--allocations", long_counts)
    broken = tmp_path / "boolq.jsonl"
    broken.write_text('{"question": "q", "answer": true}\n')
    with pytest.raises(ValueError, match=r"boolq.jsonl: line 1 lacks the field 'passage'"):
        compare(tmp_path, bench_files, "cmp2", "--seeds", "[0]", "--zeroshot.tasks", "[boolq]", "--zeroshot.limit", "2",
                "--zeroshot.data_files", f"{{boolq: {broken}}}")
    assert not (tmp_path / "cmp" / "comparison.json").exists() and not (tmp_path / "cmp2" / "comparison.json").exists()
