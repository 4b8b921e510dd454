"""Every shipped config parses, and every offline (embedded) config runs end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lit_activation.cli import build_cli

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
CLI_CONFIGS = [c for c in CONFIGS if "trainer" in yaml.safe_load(c.read_text())]


def test_configs_exist():
    names = {c.stem for c in CONFIGS}
    assert {"counts", "counts_corpora", "counts_embedded"} <= names


@pytest.mark.parametrize("config", CLI_CONFIGS, ids=lambda c: c.stem)
def test_config_parses_and_instantiates(config):
    first = config.read_text().splitlines()[0]
    assert first.startswith("#"), "every config starts with a comment"
    assert f"--config configs/{config.name}" in config.read_text(), "and gives the command that runs it"
    cli = build_cli(["--config", str(config)], run=False)
    assert cli.model is not None and cli.datamodule is not None
    assert cli.trainer.predicting is False  # nothing ran


EMBEDDED = [c for c in CLI_CONFIGS if c.stem.endswith("_embedded") and "lit-activation predict" in c.read_text()]


@pytest.mark.parametrize("config", EMBEDDED, ids=lambda c: c.stem)
def test_embedded_predict_config_runs_on_a_tiny_model(config, tmp_path):
    build_cli([
        "predict", "--config", str(config), "--model.model", "tiny-llama",
        "--data.init_args.num_samples", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path),
    ])
    produced = {p.name for p in tmp_path.rglob("*.png")}
    assert produced, f"{config.name} wrote no figure"


VALIDATE = [c for c in CLI_CONFIGS if c.stem.endswith("_embedded") and "lit-activation validate" in c.read_text()]


@pytest.mark.parametrize("config", VALIDATE, ids=lambda c: c.stem)
def test_embedded_validate_config_runs_on_a_tiny_model(config, tmp_path):
    cli = build_cli([
        "validate", "--config", str(config), "--model.model", "tiny-llama",
        "--data.init_args.max_chunks", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path),
    ])
    record = json.loads(next(tmp_path.rglob("pruning.json")).read_text())
    assert record["achieved_sparsity"] > 0.4
    assert any(k.startswith("ppl/wiki/") for k in cli.trainer.callback_metrics)


def test_compare_config_parses():
    from jsonargparse import ArgumentParser

    from lit_activation.compare import compare

    parser = ArgumentParser()
    parser.add_function_arguments(compare)
    cfg = parser.parse_path(str(Path(__file__).parents[1] / "configs" / "compare_embedded.yaml"))
    assert cfg.methods == ["uniform", "activation", "owl"] and cfg.sparsities == [0.5, 0.6, 0.7]


def test_console_script_exits_zero_after_a_run(tmp_path):
    """The console script runs sys.exit(main()): a finished run must exit with status 0."""
    import subprocess
    import sys

    wrapper = "import sys; from lit_activation.cli import main; sys.exit(main())"
    config = Path(__file__).parents[1] / "configs" / "counts_embedded.yaml"
    done = subprocess.run(
        [sys.executable, "-c", wrapper, "predict", "--config", str(config), "--model.model", "tiny-llama",
         "--data.init_args.num_samples", "1", "--trainer.logger.init_args.save_dir", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert next(tmp_path.rglob("counts.json"))
