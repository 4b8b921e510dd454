"""Every shipped config parses, and every offline (embedded) config runs end to end on a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lit_activation.cli import main

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
    cli = main(["--config", str(config)], run=False)
    assert cli.model is not None and cli.datamodule is not None
    assert cli.trainer.predicting is False  # nothing ran
