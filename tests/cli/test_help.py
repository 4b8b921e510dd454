"""The tool's own help and version, and each subcommand's help: this project's options first, Lightning's
that apply after, the rest (optimizers, fitting) not listed and still parsed."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import yaml

import lit_activation
from lit_activation.cli import build_cli, main
from lit_activation.trainer import ActivationTrainer
from tests.helpers.cli import subcommand_parsers

ROOT = Path(__file__).parents[2]
SUBCOMMANDS = ("predict", "validate", "compare", "plan")
# Listed in this order when a subcommand has them (the titles' first words).
ORDER = ("options", "model", "how scores are computed", "data", "analyses", "pruning", "calibration", "zero-shot", "OWN", "trainer")
OWN = {"predict": "predict's own", "validate": "validate's own", "compare": "compare: the sweep", "plan": "plan: the hardware"}
# Shown by each subcommand (a sample of its own and of Lightning's that apply).
SHOWN = {
    "predict": ("--model.model", "--data ", "--trainer.callbacks ", "--resume", "--trainer.devices", "--trainer.limit_predict_batches"),
    "validate": ("--model.model", "--pruning.sparsity", "--pruning.calibration.samples", "--zeroshot.tasks", "--trainer.limit_val_batches"),
    "compare": ("--model.model", "--pruning.metric", "--allocations ", "--sparsities", "--output_dir", "--trainer.devices"),
    "plan": ("--model.model", "--pruning.allocation", "--device_type", "--memory_gb", "--trainer.devices"),
}
# Never listed: what only fitting uses, optimizers, and what this tool sets or never uses.
HIDDEN = (
    "--optimizer", "--lr_scheduler", "max_epochs", "min_steps", "max_time", "limit_train_batches", "val_check_interval",
    "check_val_every_n_epoch", "num_sanity_val_steps", "accumulate_grad_batches", "gradient_clip_val", "overfit_batches",
    "sync_batchnorm", "reload_dataloaders_every_n_epochs", "enable_checkpointing", "enable_model_summary", "inference_mode",
    "barebones", "model_registry", "--ckpt_path", "--weights_only", "--return_predictions", "model.engine.rows",
)


@pytest.fixture(scope="module")
def parsers() -> dict:
    return subcommand_parsers()


def help_of(parsers: dict, subcommand: str, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps to the terminal's width; 80 columns is the measure
    return parsers[subcommand].format_help()


@pytest.mark.parametrize("args", [[], ["-h"], ["--help"]], ids=["no-arguments", "-h", "--help"])
def test_the_tool_s_help_lists_the_five_subcommands_and_how_to_get_theirs(args, capsys):
    main(args)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) < 30, out
    for sub in (*SUBCOMMANDS, "report"):
        (row,) = [line for line in lines if line.startswith(f"  {sub} ")]
        assert len(row.split()) > 3, row  # the name and a one-line description
    assert "lit-activation SUBCOMMAND --help" in out and "--version" in out and "--verbose" in out and "--debug" in out
    assert "Lightning Trainer command line tool" not in out


def test_the_version_is_the_package_s_and_pyproject_s(capsys):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    main(["--version"])
    assert capsys.readouterr().out.strip() == f"lit-activation {lit_activation.__version__}"
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert lit_activation.__version__ == declared, "reinstall the package (pip install -e .): its metadata is an older pyproject's"


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_a_subcommand_s_help_lists_this_project_s_options_first_in_at_most_200_lines(parsers, subcommand, monkeypatch):
    text = help_of(parsers, subcommand, monkeypatch)
    lines = text.splitlines()
    assert len(lines) <= 200, f"{subcommand} --help is {len(lines)} lines"
    assert lines[0] == f"usage: lit-activation {subcommand} [--config CONFIG] [--OPTION VALUE ...]"
    titles = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    order = [next(i for i, first in enumerate(ORDER) if title.startswith(OWN[subcommand] if first == "OWN" else first)) for title in titles]
    assert order == sorted(order) and len(set(order)) == len(order), titles
    assert titles[-1].startswith("trainer") and any(t.startswith(OWN[subcommand]) for t in titles), titles
    for option in SHOWN[subcommand]:
        assert option in text, option
    for option in HIDDEN:
        assert option not in text, option
    assert "known subclasses" not in text and "lightning.pytorch." not in text  # classes by the names the options take


def test_the_help_names_the_classes_an_option_takes(parsers, monkeypatch):
    text = help_of(parsers, "validate", monkeypatch)
    allocation = text[text.index("--pruning.allocation ALLOCATION") : text.index("--pruning.nm")]
    assert "classes: Activation, AlphaPruning, OWL, Uniform" in " ".join(allocation.split())
    data = " ".join(text[text.index("--data CONFIG") :].split())
    assert "classes: ActivationDataModule, PerplexityDataModule" in data


def test_the_subcommand_help_is_what_the_command_prints(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lit-activation plan ") and "--memory_gb" in out and "--optimizer" not in out
    assert len(out.splitlines()) <= 200


def test_options_left_out_of_the_help_still_parse_and_are_saved(tmp_path, monkeypatch):
    """Saved config.yaml files name every Trainer option, optimizer and lr_scheduler: not listed is not removed."""
    monkeypatch.chdir(tmp_path)
    calls = []

    @functools.wraps(ActivationTrainer.predict)
    def record(self, *args, **kwargs):
        calls.append(kwargs)

    monkeypatch.setattr(ActivationTrainer, "predict", record)
    hidden = [
        "--trainer.max_epochs", "3", "--trainer.gradient_clip_val", "0.5", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_model_summary", "false", "--trainer.inference_mode", "false", "--optimizer", "null",
        "--lr_scheduler", "null", "--ckpt_path", "null", "--model.engine.tile_mb", "64",
    ]
    cli = build_cli(["predict", "--config", str(ROOT / "configs" / "counts_embedded.yaml"), *hidden])
    assert len(calls) == 1
    trainer = cli.config.predict.trainer
    assert (trainer.max_epochs, trainer.gradient_clip_val, trainer.num_sanity_val_steps, trainer.enable_model_summary) == (3, 0.5, 0, False)
    saved = yaml.safe_load(cli._parser("predict").dump(cli.config.predict, skip_none=False))  # what config.yaml holds
    assert saved["trainer"]["max_epochs"] == 3 and saved["trainer"]["gradient_clip_val"] == 0.5
    assert "optimizer" in saved and "lr_scheduler" in saved and "ckpt_path" in saved


def test_a_bare_verbose_is_the_tool_s_and_verbose_with_a_value_is_validate_s():
    from lit_activation.cli.console import split_flags

    assert split_flags(["validate", "--verbose", "--config", "c.yaml"]) == (False, True, ["validate", "--config", "c.yaml"])
    assert split_flags(["validate", "--verbose", "false"]) == (False, False, ["validate", "--verbose", "false"])
    assert split_flags(["--debug", "predict", "--verbose"]) == (True, True, ["predict"])


def test_the_engine_s_help_is_its_first_sentences():
    from lit_activation.cli.help import first_sentence

    assert first_sentence("how fp32 products are formed. `ieee`: plain fp32.") == "how fp32 products are formed."
    assert first_sentence("N:M, e.g. '2:4': every layer. Then more.") == "N:M, e.g. '2:4': every layer."
    assert re.fullmatch(r"one sentence\.", first_sentence("one   sentence."))


def test_predict_lists_the_engine_in_full_and_the_pruning_subcommands_by_first_sentences(parsers, monkeypatch):
    full = "`auto` (default): `split` on CUDA, `ieee` elsewhere"
    assert full in " ".join(help_of(parsers, "predict", monkeypatch).split())
    short = " ".join(help_of(parsers, "validate", monkeypatch).split())
    assert "--model.engine.matmul {auto,ieee,split} how fp32 products are formed. (default: auto)" in short and full not in short

