"""Every shipped config parses and instantiates through its own command, and every offline (embedded)
config runs end to end on a tiny model."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lit_activation.cli import build_cli
from lit_activation.trainer import ActivationTrainer
from tests.helpers import child_env
from tests.helpers.cli import build_not_run

ROOT = Path(__file__).parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
COMMAND = re.compile(r"^#\s+lit-activation (predict|validate|compare|plan) --config configs/(\S+\.yaml)")


def subcommand(config: Path) -> str:
    """The subcommand of the command the config's header gives for itself."""
    for line in config.read_text().splitlines():
        match = COMMAND.match(line)
        if match and match.group(2) == config.name:
            return match.group(1)
    raise AssertionError(f"{config.name}: no header line '#   lit-activation <subcommand> --config configs/{config.name}'")


def test_configs_exist():
    names = {c.stem for c in CONFIGS}
    assert {"counts", "counts_corpora", "counts_embedded", "compare_embedded", "prune_activation"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_config_parses_and_instantiates(config, monkeypatch):
    assert config.read_text().startswith("#"), "every config starts with a comment"
    sub = subcommand(config)
    cli, calls = build_not_run([sub, "--config", str(config)], monkeypatch)
    assert len(calls) == 1 and calls[0]["model"] is cli.model and cli.datamodule is not None  # instantiated, nothing ran
    if sub in ("validate", "compare"):
        assert any(type(cb).__name__ == "Pruning" for cb in cli.trainer.callbacks)


def run_tiny(config: Path, tmp_path: Path, *extra: str) -> ActivationTrainer:
    sub = subcommand(config)
    data = ["--data.init_args.num_samples", "2"] if sub == "predict" else ["--data.init_args.max_chunks", "2"]
    cli = build_cli([
        sub, "--config", str(config), "--model.model", "tiny-llama", *data, "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path), *extra,
    ])
    return cli.trainer


EMBEDDED = [c for c in CONFIGS if c.stem.endswith("_embedded")]


# The figures each writer documents (its docstring, README "Outputs", docs/method.md), by class name.
FIGURES = {
    "ActivationCounts": {"counts.png"},
    "LLMDcos": {"llmdcos_box.png", "similarity_matrix.png"},
    "STSCorrelation": {"sts_layers.png"},
    "AllPairsSimilarity": {"allpairs_layers.png", "allpairs_heatmap.png"},
    "Pruning": {"sparsity.png"},
}
PNG = b"\x89PNG\r\n\x1a\n"


def documented_figures(config: Path) -> tuple[str, set[str]]:
    """(logger name, the PNGs the config's callbacks, and for validate its pruning group, are documented to write)."""
    parsed = yaml.safe_load(config.read_text())
    callbacks = [cb["class_path"].rsplit(".", 1)[-1] for cb in parsed["trainer"].get("callbacks") or []]
    if subcommand(config) == "validate":
        callbacks.append("Pruning")
    assert set(callbacks) <= set(FIGURES), f"{config.name}: add the figures of {set(callbacks) - set(FIGURES)} to FIGURES"
    return parsed["trainer"]["logger"]["init_args"]["name"], set().union(*(FIGURES[c] for c in callbacks))


def assert_figures(tmp_path: Path, name: str, expected: set[str]) -> None:
    """Exactly the documented PNGs, real PNG files, all in the run's version dir."""
    assert expected, "a run checked here documents at least one figure"
    pngs = sorted(tmp_path.rglob("*.png"))
    assert {p.name for p in pngs} == expected and len(pngs) == len(expected), [str(p.relative_to(tmp_path)) for p in pngs]
    for png in pngs:
        assert png.parent == tmp_path / name / "version_0", png
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 1000, png


@pytest.mark.slow
@pytest.mark.parametrize("config", [c for c in EMBEDDED if subcommand(c) == "predict"], ids=lambda c: c.stem)
def test_embedded_predict_config_runs_on_a_tiny_model(config, tmp_path):
    name, expected = documented_figures(config)
    run_tiny(config, tmp_path)
    assert_figures(tmp_path, name, expected)


def test_sts_config_writes_its_figure_on_a_tiny_model(tmp_path, bench_files):
    """No embedded config uses STSCorrelation: the hub config, offline on the test's STS-B file."""
    config = ROOT / "configs" / "sts.yaml"
    name, expected = documented_figures(config)
    assert expected == {"sts_layers.png"}
    run_tiny(config, tmp_path, "--data.init_args.num_samples", "8", "--data.init_args.data_files", json.dumps({"stsb": bench_files["stsb"]}),
             "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--model.dtype", "float32")
    assert_figures(tmp_path, name, expected)


@pytest.mark.slow
@pytest.mark.parametrize("config", [c for c in EMBEDDED if subcommand(c) == "validate"], ids=lambda c: c.stem)
def test_embedded_validate_config_runs_on_a_tiny_model(config, tmp_path):
    name, expected = documented_figures(config)
    trainer = run_tiny(config, tmp_path)
    record = json.loads((tmp_path / name / "version_0" / "pruning.json").read_text())
    assert record["target_sparsity"] == 0.5 and 0.45 < record["achieved_sparsity"] <= 0.5
    assert any(k.startswith("ppl/wiki/") for k in trainer.callback_metrics)
    assert_figures(tmp_path, name, expected)


@pytest.mark.slow
def test_embedded_compare_config_runs_on_a_tiny_model(tmp_path):
    run_tiny(ROOT / "configs" / "compare_embedded.yaml", tmp_path, "--sparsities", "[0.5]", "--seeds", "[0]", "--output_dir", str(tmp_path / "cmp"))
    parsed = yaml.safe_load((ROOT / "configs" / "compare_embedded.yaml").read_text())
    methods = len(parsed["allocations"]) * len(parsed["metrics"])  # every allocation with every metric, at 0.5, seed 0
    with open(tmp_path / "cmp" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:5] == ["method", "pruning_metric", "sparsity", "seed", "perplexity"]
    assert [(r["method"], r["sparsity"]) for r in rows[:1]] == [("dense", "0.0")] and len(rows) == 1 + methods
    assert len({(r["method"], r["pruning_metric"]) for r in rows[1:]}) == methods and {r["sparsity"] for r in rows[1:]} == {"0.5"}
    assert all(float(r["perplexity"]) > 1 for r in rows)
    assert (tmp_path / "cmp" / "summary.md").is_file() and (tmp_path / "cmp" / "compare.png").is_file()


@pytest.mark.slow
def test_console_script_exits_zero_after_a_run(tmp_path):
    """The console script runs sys.exit(main()): a finished run must exit with status 0."""
    wrapper = "import sys; from lit_activation.cli import main; sys.exit(main())"
    config = ROOT / "configs" / "counts_embedded.yaml"
    done = subprocess.run(
        [sys.executable, "-c", wrapper, "predict", "--config", str(config), "--model.model", "tiny-llama",
         "--data.init_args.num_samples", "1", "--trainer.logger.init_args.save_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env=child_env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert next(tmp_path.rglob("counts.json"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pruning.sparsity", "1.5"], r"^error: Sparsity 1.5 is outside \[0, 1\)"),
        (
            ["--pruning.nm", "2:4", "--pruning.sparsity", "0.6", "--pruning.allocation", "Uniform"],
            r"^error: N:M 2:4 prunes 0.500 of the weights, but sparsity 0.6 was asked",
        ),
        (["--pruning.metric", "sparsegpt"], r"^error: Parser key \"pruning.metric\": 'sparsegpt' is neither a class name nor a class_path of this option"),
        (["--pruning.allocation", "Bogus"], r"^error: Parser key \"pruning.allocation\": 'Bogus' is neither a class name nor a class_path"),
        (["--pruning.calibration.samples", "x"], r"^error: Parser key \"pruning.calibration.samples\": Expected a <class 'int'>. Got value: x$"),
        (["--data.init_args.dataset", "boolq"], r"^error: Perplexity needs running text; 'boolq' is a prompt set"),
        (["--nonsense", "3"], r"^error: unrecognized arguments: --nonsense 3"),
        # inside a class option: the option and the class, not jsonargparse's union bookkeeping
        (["--data.init_args.nosuch", "1"], r"^error: Parser key \"data\" \(PerplexityDataModule\): Option 'nosuch' is not accepted$"),
        (
            ["--data.init_args.seqlen", "abc"],
            r"^error: Parser key \"data.init_args.seqlen\" \(PerplexityDataModule\): Expected a <class 'int'>. Got value: abc$",
        ),
    ],
)
def test_user_errors_print_one_line_and_exit_2(tmp_path, args, message, monkeypatch, capsys):
    from lit_activation.cli import main

    config = ROOT / "configs" / "prune_embedded.yaml"
    monkeypatch.setattr(sys, "argv", ["lit-activation", "validate", "--config", str(config), "--model.model", "tiny-llama", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and re.search(message, lines[0]), err[-1500:]
    assert "Traceback" not in err


@pytest.mark.slow
def test_the_console_script_says_one_line_and_debug_shows_the_traceback(tmp_path):
    command = [sys.executable, "-m", "lit_activation", "validate", "--config", str(ROOT / "configs" / "prune_embedded.yaml"), "--pruning.sparsity", "1.5"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == "error: Sparsity 1.5 is outside [0, 1): 0 keeps every weight, 0.5 prunes half"
    assert "Traceback" not in done.stderr
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "Sparsity 1.5 is outside" in debug.stderr


class ModelLoaded(Exception):
    """Raised by the patched loader: the run got as far as loading the model."""


def predict_into(tmp_path: Path, monkeypatch, capsys, *extra: str) -> tuple[int | None, str]:
    """`lit-activation predict --config configs/counts_embedded.yaml` into tmp_path/X through main(), with
    the model loader replaced by one that raises ModelLoaded: (exit code or None, stderr)."""
    from lit_activation.cli import main

    def no_loading(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr("lit_activation.module.load_causal_lm", no_loading)
    args = [
        "predict", "--config", str(ROOT / "configs" / "counts_embedded.yaml"), "--model.model", "tiny-llama", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.name", "X", *extra,
    ]
    try:
        main(args)
    except SystemExit as exit_:
        return exit_.code, capsys.readouterr().err
    return None, capsys.readouterr().err


def existing_run(tmp_path: Path) -> Path:
    """runs/X/version_0 of an earlier run: its config and a result."""
    run = tmp_path / "X" / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    (run / "counts.json").write_text("{}")
    return run


def test_an_existing_logger_version_is_one_error_line_before_the_model_loads(tmp_path, monkeypatch, capsys):
    run = existing_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code, err = predict_into(tmp_path, monkeypatch, capsys, "--trainer.logger.init_args.version", "0")  # ModelLoaded would propagate
    assert code == 2, err[-1500:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: log dir {run} already exists (trainer.logger version 0); a run's results are never overwritten. "
        "Choose another --trainer.logger.init_args.version or name, or leave version unset (null) for the next free version_N"
    ], err[-1500:]
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before and sorted(p.name for p in run.parent.iterdir()) == ["version_0"]


@pytest.mark.parametrize(
    "extra",
    [
        [],  # version null: the next free version_N
        ["--trainer.logger.init_args.version", "1"],  # a version that does not exist yet
        ["--trainer.logger", "CSVLogger", "--trainer.logger.init_args.save_dir", "{tmp}", "--trainer.logger.init_args.name", "csv",
         "--trainer.logger.init_args.version", "0"],  # another logger's dir
    ],
    ids=["version-null", "new-version", "csv-logger"],
)
@pytest.mark.slow
def test_runs_that_do_not_reuse_a_version_dir_go_on_to_load_the_model(tmp_path, monkeypatch, capsys, extra):
    existing_run(tmp_path)
    with pytest.raises(ModelLoaded):
        predict_into(tmp_path, monkeypatch, capsys, *[a.replace("{tmp}", str(tmp_path)) for a in extra])


def test_an_existing_csv_logger_version_is_refused_too(tmp_path, monkeypatch, capsys):
    (tmp_path / "csv" / "version_3").mkdir(parents=True)
    code, err = predict_into(
        tmp_path, monkeypatch, capsys, "--trainer.logger", "CSVLogger", "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.name", "csv", "--trainer.logger.init_args.version", "3",
    )
    assert code == 2 and f"error: log dir {tmp_path / 'csv' / 'version_3'} already exists" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_processes_of_other_ranks_do_not_refuse_the_dir_rank_0_made(tmp_path, monkeypatch, capsys):
    """Lightning starts ranks 1.. by running the same command again (LOCAL_RANK set) after rank 0 began."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    (tmp_path / "X" / "version_0").mkdir(parents=True)  # as rank 0 made it (this process saves the config as rank 0 would)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with pytest.raises(ModelLoaded):
        predict_into(tmp_path, monkeypatch, capsys, "--trainer.logger.init_args.version", "0")


@pytest.mark.slow
@pytest.mark.parametrize(("length", "stops"), [(512, False), (513, True)])
def test_a_sequence_longer_than_the_model_s_positions_stops_before_loading(tmp_path, monkeypatch, capsys, length, stops):
    """tiny-gpt2 has 512 learned positions: 513 would fail inside the embedding after the weights load."""
    extra = ["--model.model", "tiny-gpt2", "--data.init_args.datasets", "[wiki]", "--data.init_args.num_samples", "2",
             "--data.init_args.window", str(length), "--data.init_args.max_length", str(length)]
    if not stops:
        with pytest.raises(ModelLoaded):
            predict_into(tmp_path, monkeypatch, capsys, *extra)
        return
    code, err = predict_into(tmp_path, monkeypatch, capsys, *extra)
    assert code == 2 and [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: the longest input is 513 tokens; 'tiny-gpt2' takes at most 512 positions (max_position_embeddings): "
        "lower data.init_args.max_length (prompts) or data.init_args.window (corpus windows) to <= 512"
    ], err[-1500:]


def test_every_phase_s_length_is_checked_against_the_positions():
    from lit_activation.callbacks.pruning import Pruning
    from lit_activation.models.architectures import model_config
    from lit_activation.planning.plan import EvaluationPass, Job, ScoringPass, check_context
    from lit_activation.pruning.allocations import Activation, OnTheFlyCounts
    from lit_activation.pruning.context import Calibration

    def prune(seqlen: int, counts_length: int | None = None) -> Pruning:
        allocation = Activation(OnTheFlyCounts(samples=4, length=counts_length)) if counts_length else Activation(OnTheFlyCounts(length=64))
        return Pruning(sparsity=0.5, allocation=allocation, calibration=Calibration(dataset="wiki", samples=1, seqlen=seqlen))

    config = model_config("tiny-llama")  # 512 positions
    check_context(Job("tiny-llama", datamodule=ScoringPass(1, 4096, longest=512)), config)  # a cap above the positions, inputs within
    check_context(Job("tiny-llama", datamodule=ScoringPass(1, 512), callbacks=[prune(512, 512)]), config)
    check_context(Job("tiny-llama", datamodule=EvaluationPass(1, 512)), config)
    for job, option in [
        (Job("tiny-llama", callbacks=[prune(513)]), "pruning.calibration.seqlen"),
        (Job("tiny-llama", callbacks=[prune(64, 513)]), "pruning.allocation.init_args.counts.init_args.length"),
        (Job("tiny-llama", datamodule=ScoringPass(1, 513)), "data.init_args.max_length / window"),
        (Job("tiny-llama", datamodule=ScoringPass(1, 4096, longest=513)), "the longest input"),
        (Job("tiny-llama", datamodule=EvaluationPass(1, 513)), "data.init_args.seqlen"),
    ]:
        with pytest.raises(ValueError, match=f"^{option} is 513 tokens; 'tiny-llama' takes at most 512 positions"):
            check_context(job, config)


def test_a_mistyped_subcommand_and_a_config_that_is_not_yaml_are_named(tmp_path, capsys):
    from lit_activation.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  model: {a: b\n")
    for args, expected in [
        (["predcit", "--config", "x"], "error: unknown subcommand 'predcit'; did you mean predict? accepted: predict, validate, compare, plan, report"),
        (["predict", "--config", str(bad)], f"error: --config {bad} is not valid YAML: expected ',' or '}}', but got '<stream end>' at line 3, column 1"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [expected]


@pytest.mark.slow
def test_a_run_refused_after_its_dir_was_made_leaves_no_empty_version_dir(tmp_path, monkeypatch, capsys):
    """Refused in configure_model (the sequence is too long), after Lightning made version_0 and saved
    config.yaml there: the dir goes, so the next run is version_0 again and nothing looks like a run."""
    code, err = predict_into(tmp_path, monkeypatch, capsys, "--model.model", "tiny-gpt2", "--data.init_args.datasets", "[wiki]",
                             "--data.init_args.num_samples", "2", "--data.init_args.window", "600", "--data.init_args.max_length", "600")
    assert code == 2 and "takes at most 512 positions" in err
    assert not list((tmp_path / "X").glob("version_*"))


def test_only_a_run_dir_without_results_is_discarded(tmp_path):
    from lit_activation.cli.run_dirs import discard_empty_run_dirs

    empty, results, other = (tmp_path / n for n in ("empty", "results", "other"))
    for d in (empty, results, other):
        d.mkdir()
        (d / "config.yaml").write_text("x")
        (d / "events.out.tfevents.1.host").write_text("x")
    (results / "counts.json").write_text("{}")
    discard_empty_run_dirs([empty, results])
    assert not empty.exists() and sorted(p.name for p in results.iterdir()) == ["config.yaml", "counts.json", "events.out.tfevents.1.host"]
    assert other.exists()  # not this run's


def test_short_prompts_under_a_long_cap_are_not_refused(tmp_path, monkeypatch, capsys):
    """max_length caps prompts: a cap above the model's positions is fine while every prompt fits."""
    with pytest.raises(ModelLoaded):
        predict_into(tmp_path, monkeypatch, capsys, "--model.model", "tiny-gpt2", "--data.init_args.datasets", "[reviews]",
                     "--data.init_args.num_samples", "2", "--data.init_args.max_length", "4096")


def test_an_option_of_a_nested_class_names_the_innermost_class(tmp_path, capsys):
    from lit_activation.cli import main

    config = ROOT / "configs" / "prune_embedded.yaml"
    with pytest.raises(SystemExit):
        main(["validate", "--config", str(config), "--model.model", "tiny-llama", "--pruning.allocation.init_args.counts", "GivenCounts",
              "--pruning.allocation.init_args.counts.init_args.countz", "[1, 2]"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "(GivenCounts): Option 'countz' is not accepted" in err[0], err


def test_a_config_whose_values_yaml_would_read_as_dates_passes_the_syntax_check(tmp_path):
    from lit_activation.cli.command import check_command_line

    config = tmp_path / "c.yaml"
    config.write_text("trainer:\n  logger:\n    init_args:\n      version: 2024-02-30\n")  # no such date: text to jsonargparse
    check_command_line(["predict", "--config", str(config)])
