"""`lit-activation compare`: every finished run recorded at once, resumable, never mixed with other settings."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lit_activation import comparison
from lit_activation.cli import build_cli
from lit_activation.trainer import ActivationTrainer

CONFIG = Path(__file__).parents[1] / "configs" / "compare_embedded.yaml"
SWEEP = """
allocations:
  - class_path: lit_activation.allocations.Uniform
  - class_path: lit_activation.allocations.OWL
sparsities: [0.5]
seeds: [0, 1]
"""


def compare(tmp_path: Path, files: dict[str, str], *extra: str) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    build_cli([
        "compare", "--config", str(CONFIG), "--config", str(sweep), "--model.model", "tiny-llama",
        "--data.init_args.dataset", "wikitext2", "--data.init_args.data_files", files["wikitext2"],
        "--data.init_args.seqlen", "64", "--data.init_args.max_chunks", "2",
        "--pruning.calibration.dataset", "c4", "--pruning.calibration.files", files["c4"],
        "--pruning.calibration.samples", "4", "--pruning.calibration.seqlen", "32",
        "--output_dir", str(tmp_path / "cmp"), *extra,
    ])


def rows(tmp_path: Path) -> list[dict]:
    with open(tmp_path / "cmp" / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_an_interrupted_comparison_keeps_its_runs_and_resumes(tmp_path, bench_files, monkeypatch, capsys):
    original = ActivationTrainer._one_run
    calls = []

    def dies_on_the_third(self, *args, **kwargs):
        calls.append(args[-2].name)
        if len(calls) == 3:
            (tmp_path / "cmp" / "runs" / args[-2].name).mkdir(parents=True)  # what a killed run leaves behind
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ActivationTrainer, "_one_run", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        compare(tmp_path, bench_files)
    assert [(r["method"], r["seed"]) for r in rows(tmp_path)] == [("dense", "0"), ("uniform", "0")]  # kept, as written
    assert "Compare: run 1 of 5: dense" in capsys.readouterr().out
    monkeypatch.setattr(ActivationTrainer, "_one_run", original)
    compare(tmp_path, bench_files)
    out = capsys.readouterr().out
    assert "Compare: run 3 of 5: uniform_s0.5_seed1" in out and "(5 runs, 3 run now)" in out
    assert [(r["method"], r["sparsity"], r["seed"]) for r in rows(tmp_path)] == [
        ("dense", "0.0", "0"), ("uniform", "0.5", "0"), ("uniform", "0.5", "1"), ("owl", "0.5", "0"), ("owl", "0.5", "1"),
    ]
    kept = [p.name for p in (tmp_path / "cmp" / "runs").iterdir() if ".interrupted-" in p.name]
    assert len(kept) == 1 and kept[0].startswith("uniform_s0.5_seed1.interrupted-")  # set aside, never deleted
    compare(tmp_path, bench_files)
    assert "(5 runs, 0 run now)" in capsys.readouterr().out
    summary = (tmp_path / "cmp" / "summary.md").read_text()
    assert "| uniform |" in summary and "| owl |" in summary and "| dense |" in summary


def test_other_settings_in_the_same_output_dir_are_refused(tmp_path, bench_files):
    compare(tmp_path, bench_files, "--seeds", "[0]")
    with pytest.raises(ValueError, match="holds a comparison with other settings \\(calibration\\)"):
        compare(tmp_path, bench_files, "--seeds", "[0]", "--pruning.calibration.samples", "3")
    other_owl = "[{class_path: lit_activation.allocations.Uniform}, {class_path: lit_activation.allocations.OWL, init_args: {lam: 0.1}}]"
    with pytest.raises(ValueError, match="allocation owl"):
        compare(tmp_path, bench_files, "--seeds", "[0]", "--allocations", other_owl)
    assert len(rows(tmp_path)) == 3  # dense, uniform, owl: untouched


def test_summary_math_by_hand():
    summary = comparison.summarize([
        {"method": "uniform", "sparsity": "0.5", "perplexity": "10"}, {"method": "uniform", "sparsity": "0.5", "perplexity": "14"},
        {"method": "dense", "sparsity": "0.0", "perplexity": "5"},
    ])
    assert {(r["method"], r["mean"], round(r["std"], 6), r["runs"]) for r in summary} == {("uniform", 12.0, 2.828427, 2), ("dense", 5.0, 0.0, 1)}
    assert comparison.progress(3, 5, comparison.Run("owl", 0.5, 1), [30.0, 90.0]) == "Compare: run 3 of 5: owl_s0.5_seed1, about 3 min left"
    with pytest.raises(ValueError, match="sparsity 1.0 is outside \\(0, 1\\)"):
        comparison.sweep([], [1.0], [0])
