"""Errors that say why, in one line and before any work: the closest option or class to a mistyped one,
the cause of a model that cannot be found; a refused run leaves no directory behind; a command prints
one line per phase and leaves logging and warnings as they were."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from pathlib import Path

import pytest
from jsonargparse import ArgumentError

from lit_activation.cli import build_cli, main
from lit_activation.cli.console import console
from lit_activation.cli.errors import one_line, suggestion
from lit_activation.cli.run_dirs import discard_empty_run_dirs, missing_parents
from lit_activation.trainer import ActivationTrainer
from tests.helpers import child_env
from tests.helpers.cli import subcommand_parsers

ROOT = Path(__file__).parents[2]
COUNTS = str(ROOT / "configs" / "counts_embedded.yaml")
PRUNE = str(ROOT / "configs" / "prune_embedded.yaml")


@pytest.fixture(scope="module")
def parsers() -> dict:
    return subcommand_parsers()


def refused(parser, args: list[str]) -> str:
    """The one line a user reads for `args`, with the hint the CLI gives a parser error."""
    with pytest.raises(ArgumentError) as caught:
        parser.parse_args(args)
    caught.value.hint = suggestion(parser, caught.value)
    return one_line(caught.value)


@pytest.mark.parametrize(
    ("subcommand", "args", "expected"),
    [
        ("predict", ["--trainer.devics", "2"], "unrecognized arguments: --trainer.devics 2; did you mean --trainer.devices?"),
        ("predict", ["--modle.model", "x"], "unrecognized arguments: --modle.model x; did you mean --model.model?"),
        (
            "predict", ["--config", COUNTS, "--data.init_args.num_sampels", "3"],
            'Parser key "data" (ActivationDataModule): Option \'num_sampels\' is not accepted; did you mean --data.init_args.num_samples?',
        ),
        (
            "validate", ["--config", PRUNE, "--pruning.allocation", "Uniforn"],
            "Parser key \"pruning.allocation\": 'Uniforn' is neither a class name nor a class_path of this option; did you mean Uniform? "
            "accepted: Activation, AlphaPruning, OWL, Uniform",
        ),
        (
            "validate", ["--config", PRUNE, "--pruning.metric", "sparsegpt"],
            "Parser key \"pruning.metric\": 'sparsegpt' is neither a class name nor a class_path of this option; did you mean SparseGPT? "
            "accepted: Taylor, GBLM, Magnitude, SparseGPT, Wanda",
        ),
        (
            "validate", ["--config", PRUNE, "--pruning.allocation.init_args.alhpa", "3"],
            'Parser key "pruning.allocation" (Activation): Option \'alhpa\' is not accepted; did you mean --pruning.allocation.init_args.alpha?',
        ),
        ("validate", ["--config", PRUNE, "--nonsense", "3"], "unrecognized arguments: --nonsense 3"),  # nothing close: no guess
        (
            "predict", ["--config", COUNTS, "--model.engine.target", "maxlogit"],
            "Parser key \"model.engine.target\": Expected a typing.Literal['max_logit', 'log_prob', 'loss']. Got value: maxlogit; did you mean 'max_logit'?",
        ),
        (
            "predict", ["--config", COUNTS, "--model.engine.target", "entropy"],
            "Parser key \"model.engine.target\": Expected a typing.Literal['max_logit', 'log_prob', 'loss']. Got value: entropy",
        ),
    ],
    ids=["trainer-option", "group", "data-option", "allocation-class", "metric-class-case", "allocation-option", "nothing-close", "target", "target-far"],
)
def test_a_mistyped_option_or_class_names_the_closest(parsers, subcommand, args, expected):
    assert refused(parsers[subcommand], args) == expected


def test_a_mistyped_callback_names_this_project_s_analyses(parsers):
    line = refused(parsers["predict"], ["--config", COUNTS, "--trainer.callbacks+", "LLMDcoss"])
    assert "did you mean LLMDcos? accepted: " in line and "ActivationCounts" in line and "of Lightning's" in line
    assert "ScoreCallback" not in line  # a base the analyses extend, not one of them


def test_the_command_gives_the_hint(monkeypatch, capsys):
    """Through main: the hint is the CLI's (ActivationCLI.parse_arguments), one line, status 2."""
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--config", COUNTS, "--trainer.devics", "2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: unrecognized arguments: --trainer.devics 2; did you mean --trainer.devices?"]


def test_a_mistyped_name_in_a_list_of_names_gets_the_closest():
    from lit_activation.callbacks.zeroshot import ZeroShotEval
    from lit_activation.data.registry import get_spec

    with pytest.raises(ValueError) as dataset:
        get_spec("humaneva")
    assert str(dataset.value).startswith("Unknown dataset 'humaneva'; did you mean 'humaneval'? known: ['boolq'")
    with pytest.raises(ValueError) as tasks:
        ZeroShotEval(tasks=["boolqq"])
    assert one_line(tasks.value).startswith("Unknown zero-shot tasks ['boolqq']; did you mean 'boolq'? accepted: ['boolq'")
    assert one_line(ValueError("Unknown dtype 'x'; accepted: ['float32']")) == "Unknown dtype 'x'; accepted: ['float32']"


def test_a_mistyped_subcommand_gets_the_closest(capsys):
    with pytest.raises(SystemExit):
        main(["valdiate"])
    assert capsys.readouterr().err.strip() == "error: unknown subcommand 'valdiate'; did you mean validate? accepted: predict, validate, compare, plan, report"


# ---- a model that cannot be found: the cause, before any work


def record_subcommand(monkeypatch, subcommand: str) -> list:
    """The trainer's subcommand recorded, not run: what reaches it passed every check before the work."""
    calls = []

    @functools.wraps(getattr(ActivationTrainer, subcommand))  # the CLI reads the subcommand's options from its signature
    def record(self, *args, **kwargs):
        calls.append(kwargs)

    monkeypatch.setattr(ActivationTrainer, subcommand, record)
    return calls


def test_a_hub_id_while_offline_is_refused_before_any_work_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    calls = record_subcommand(monkeypatch, "predict")
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--config", COUNTS, "--model.model", "someone/no-such-model", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and calls == []
    assert err == [
        "error: model 'someone/no-such-model' is read as a hub id, but HF_HUB_OFFLINE is set and it is not in the local cache: "
        "give a local directory (--model.model path/to/model), or unset HF_HUB_OFFLINE to download it"
    ]
    assert not (tmp_path / "runs").exists()


def test_a_local_path_that_does_not_exist_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    record_subcommand(monkeypatch, "predict")
    with pytest.raises(SystemExit):
        main(["predict", "--config", COUNTS, "--model.model", "./models/llama"])
    assert capsys.readouterr().err.strip() == f"error: model './models/llama' does not exist: no such local directory ({tmp_path}/models/llama)"


def test_plan_reads_a_published_config_offline_and_names_the_cause_for_another(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    calls = record_subcommand(monkeypatch, "plan")
    main(["plan", "--config", str(ROOT / "configs" / "counts.yaml"), "--model.model", "meta-llama/Llama-2-70b-hf"])
    assert len(calls) == 1  # no network, no refusal: the plan runs
    with pytest.raises(SystemExit):
        main(["plan", "--config", str(ROOT / "configs" / "counts.yaml"), "--model.model", "someone/no-such-model"])
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err and len(calls) == 1


# ---- a refused run leaves no directory behind


def test_a_run_refused_after_its_dirs_were_made_removes_them_all(tmp_path, monkeypatch, capsys):
    """Refused while loading the model, after Lightning made runs/X/version_0 and saved config.yaml there:
    version_0, and runs/X and runs that this run created, go."""

    def refuse(*args, **kwargs):
        raise ValueError("refused")

    monkeypatch.setattr("lit_activation.module.load_causal_lm", refuse)
    save_dir = tmp_path / "runs"
    args = ["predict", "--config", COUNTS, "--model.model", "tiny-llama", "--trainer.enable_progress_bar", "false",
            "--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.name", "X"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and "error: refused" in capsys.readouterr().err
    assert not save_dir.exists()
    kept = save_dir / "X" / "version_0"  # an earlier run's: its dirs stay, the new version_1 goes
    kept.mkdir(parents=True)
    (kept / "counts.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(args)
    assert sorted(p.name for p in (save_dir / "X").iterdir()) == ["version_0"]


def test_only_empty_dirs_this_run_made_are_removed(tmp_path):
    run = tmp_path / "runs" / "X" / "version_0"
    assert missing_parents(run) == [tmp_path / "runs" / "X", tmp_path / "runs"]
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("x")
    (tmp_path / "runs" / "other.txt").write_text("not this run's")
    discard_empty_run_dirs([run], [tmp_path / "runs" / "X", tmp_path / "runs"])
    assert not (tmp_path / "runs" / "X").exists() and (tmp_path / "runs" / "other.txt").is_file()


# ---- quiet by default, and nothing changed for whoever imports the library


def logging_state() -> list:
    names = ["", "lit_activation", "lightning.pytorch", "lightning.fabric", "huggingface_hub", "gensim"]
    return [(n, logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).handlers)) for n in names]


def test_a_command_leaves_logging_and_warnings_as_they_were(capsys):
    before = (logging_state(), list(warnings.filters), warnings.showwarning)
    main(["--version"])
    with pytest.raises(SystemExit):
        main(["predcit"])
    build_cli(["--config", COUNTS], run=False)  # the library's entry: sets nothing
    assert (logging_state(), list(warnings.filters), warnings.showwarning) == before


def test_quiet_shows_this_project_s_lines_and_warnings_one_line_each(capsys):
    from lit_activation.deprecated import DeprecatedPath
    from lit_activation.distributed.sharding import warn_if_replicated

    class Mesh:  # 2 devices, a shard group of 1: the layout shards nothing
        def size(self):
            return 2

        def __getitem__(self, dim):
            return type("Dim", (), {"size": lambda self: 1})()

    with console(verbose=False):
        logging.getLogger("lit_activation.module").info("Memory plan: predicted peak 1.25 GB per device (scoring phase)")
        logging.getLogger("lit_activation.data.samples").warning("humaneval: 2 of 2 inputs were longer than max_length=128")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False, used: False")
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        warnings.warn_explicit("predict returned None if it was on purpose", UserWarning, "prediction_loop.py", 257, module="lightning.pytorch.loops")
        warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities")
        warnings.warn_explicit("lit_activation.allocations.OWL is deprecated;\n use the new path", DeprecatedPath, "x.py", 1, module="jsonargparse")
        warn_if_replicated(Mesh())
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[:3] == [
        "Memory plan: predicted peak 1.25 GB per device (scoring phase)",
        "warning: humaneval: 2 of 2 inputs were longer than max_length=128",
        "warning: lit_activation.allocations.OWL is deprecated; use the new path",
    ]
    assert len(lines) == 4 and lines[3].startswith("warning: ModelParallelStrategy with tensor_parallel_size 1 shards nothing"), lines


def test_verbose_brings_the_libraries_lines_back(capsys):
    with console(verbose=True):
        assert logging.getLogger("lightning.pytorch.utilities.rank_zero").isEnabledFor(logging.INFO)
        assert logging.getLogger("huggingface_hub.utils._http").isEnabledFor(logging.WARNING)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.warn("predict returned None if it was on purpose", UserWarning, stacklevel=1)
        assert len(caught) == 1
    with console(verbose=False):
        assert not logging.getLogger("lightning.pytorch.utilities.rank_zero").isEnabledFor(logging.INFO)
        assert not logging.getLogger("huggingface_hub.utils._http").isEnabledFor(logging.WARNING)


def test_a_run_says_one_line_per_phase_without_lightning_s_banner(tmp_path, monkeypatch, capfd, no_model_loading):
    """Up to the model's loading: the memory plan's line; not Lightning's banner, tips, seed line or warnings."""
    with pytest.raises(no_model_loading):
        main(["predict", "--config", COUNTS, "--model.model", "tiny-llama", "--data.init_args.num_samples", "2",
              "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path)])
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("Memory plan: predicted peak")], err
    for noise in ("GPU available", "TPU available", "Tip", "No seed found", "Seed set", "INFO ", "LightningCLI's args", "Warning"):
        assert noise not in err, (noise, err)


@pytest.mark.slow
def test_the_console_script_is_quiet_and_verbose_on_demand(tmp_path):
    import subprocess

    command = [sys.executable, "-m", "lit_activation", "predict", "--config", COUNTS, "--model.model", "tiny-llama",
               "--data.init_args.num_samples", "1", "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path)]
    quiet = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=child_env())
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "GPU available" not in quiet.stderr and "predict returned None" not in quiet.stderr and "INFO " not in quiet.stderr
    assert "Memory plan: predicted peak" in quiet.stderr and "Loading tiny-llama in float32" in quiet.stderr
    assert "Finding 1 counts:" in quiet.stdout
    verbose = subprocess.run([*command, "--verbose"], capture_output=True, text=True, cwd=tmp_path, env=child_env())
    assert verbose.returncode == 0 and "GPU available" in verbose.stderr and "INFO lit_activation.module: Memory plan" in verbose.stderr
