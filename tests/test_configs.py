"""Every shipped config parses and instantiates through its own command, and every offline (embedded)
config runs end to end on a tiny model."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lit_activation.cli import build_cli
from lit_activation.trainer import ActivationTrainer

ROOT = Path(__file__).parents[1]
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
    calls = []

    @functools.wraps(getattr(ActivationTrainer, sub))  # the CLI reads the subcommand's options from its signature
    def record(self, *args, **kwargs):
        calls.append(kwargs)

    monkeypatch.setattr(ActivationTrainer, sub, record)
    cli = build_cli([sub, "--config", str(config)])
    assert len(calls) == 1 and calls[0]["model"] is cli.model and cli.datamodule is not None  # instantiated, nothing ran
    if sub in ("validate", "compare"):
        assert any(type(cb).__name__ == "WandaPruning" for cb in cli.trainer.callbacks)


def run_tiny(config: Path, tmp_path: Path, *extra: str) -> ActivationTrainer:
    sub = subcommand(config)
    data = ["--data.init_args.num_samples", "2"] if sub == "predict" else ["--data.init_args.max_chunks", "2"]
    cli = build_cli([
        sub, "--config", str(config), "--model.model", "tiny-llama", *data, "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path), *extra,
    ])
    return cli.trainer


EMBEDDED = [c for c in CONFIGS if c.stem.endswith("_embedded")]


@pytest.mark.parametrize("config", [c for c in EMBEDDED if subcommand(c) == "predict"], ids=lambda c: c.stem)
def test_embedded_predict_config_runs_on_a_tiny_model(config, tmp_path):
    run_tiny(config, tmp_path)
    produced = {p.name for p in tmp_path.rglob("*.png")}
    assert produced, f"{config.name} wrote no figure"


@pytest.mark.parametrize("config", [c for c in EMBEDDED if subcommand(c) == "validate"], ids=lambda c: c.stem)
def test_embedded_validate_config_runs_on_a_tiny_model(config, tmp_path):
    trainer = run_tiny(config, tmp_path)
    record = json.loads(next(tmp_path.rglob("pruning.json")).read_text())
    assert record["target_sparsity"] == 0.5 and 0.45 < record["achieved_sparsity"] <= 0.5
    assert any(k.startswith("ppl/wiki/") for k in trainer.callback_metrics)


def test_embedded_compare_config_runs_on_a_tiny_model(tmp_path):
    run_tiny(ROOT / "configs" / "compare_embedded.yaml", tmp_path, "--sparsities", "[0.5]", "--seeds", "[0]", "--output_dir", str(tmp_path / "cmp"))
    rows = (tmp_path / "cmp" / "results.csv").read_text().splitlines()
    assert rows[0].startswith("method,sparsity,seed,perplexity") and len(rows) == 1 + 4  # dense + 3 allocations
    assert (tmp_path / "cmp" / "summary.md").is_file() and (tmp_path / "cmp" / "compare.png").is_file()


def test_console_script_exits_zero_after_a_run(tmp_path):
    """The console script runs sys.exit(main()): a finished run must exit with status 0."""
    wrapper = "import sys; from lit_activation.cli import main; sys.exit(main())"
    config = ROOT / "configs" / "counts_embedded.yaml"
    done = subprocess.run(
        [sys.executable, "-c", wrapper, "predict", "--config", str(config), "--model.model", "tiny-llama",
         "--data.init_args.num_samples", "1", "--trainer.logger.init_args.save_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
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
        (["--pruning.metric", "sparsegpt"], r"^error: Parser key \"pruning.metric\": Expected a typing.Literal\['wanda', 'magnitude'\]"),
        (["--data.init_args.dataset", "boolq"], r"^error: Perplexity needs running text; 'boolq' is a prompt set"),
        (["--nonsense", "3"], r"^error: unrecognized arguments: --nonsense 3"),
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


def test_the_console_script_says_one_line_and_debug_shows_the_traceback(tmp_path):
    command = [sys.executable, "-m", "lit_activation", "validate", "--config", str(ROOT / "configs" / "prune_embedded.yaml"), "--pruning.sparsity", "1.5"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == "error: Sparsity 1.5 is outside [0, 1): 0 keeps every weight, 0.5 prunes half"
    assert "Traceback" not in done.stderr
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "Sparsity 1.5 is outside" in debug.stderr
