"""The config.yaml that runs saved keeps working: parsed, instantiated and run by the current code.

tests/saved_configs/ holds one per subcommand, as a run of it wrote it (README there). A class that
moved or was renamed keeps its old path with a one-line warning naming the new one.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from lit_activation.cli import build_cli
from lit_activation.deprecated import DeprecatedPath
from tests.helpers.cli import build_not_run

SAVED = sorted((Path(__file__).parent / "saved_configs").glob("*.yaml"))


def subcommand(config: Path) -> str:
    """predict_counts.yaml -> predict; old_layout_compare.yaml -> compare."""
    return config.stem.removeprefix("old_layout_").split("_")[0]


def test_every_subcommand_has_a_saved_config():
    assert {subcommand(c) for c in SAVED} == {"predict", "validate", "compare", "plan"}


@pytest.mark.parametrize("config", SAVED, ids=lambda c: c.stem)
def test_a_saved_config_parses_and_instantiates(config, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a logger's run dir is looked up under the working directory
    sub = subcommand(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecatedPath)
        _, calls = build_not_run([sub, "--config", str(config)], monkeypatch)
    assert len(calls) == 1
    moved = [str(w.message) for w in caught if issubclass(w.category, DeprecatedPath)]
    if config.stem.startswith("old_layout_"):
        assert moved and all("lit_activation.allocations." in m and "use lit_activation.pruning.allocations." in m for m in moved)
    else:
        assert moved == []


@pytest.mark.slow
def test_a_saved_run_runs_again(tmp_path, monkeypatch, bench_files):
    """The old layout's validate config, with its zero-shot file where it named it, runs end to end."""
    (tmp_path / "data").mkdir()
    shutil.copy(bench_files["boolq"], tmp_path / "data" / "boolq.jsonl")
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parent / "saved_configs" / "old_layout_validate_owl_zeroshot.yaml"
    with pytest.warns(DeprecatedPath, match=r"lit_activation\.allocations\.OWL is deprecated; use lit_activation\.pruning\.allocations\.OWL"):
        cli = build_cli(["validate", "--config", str(config)])
    (run_dir,) = (tmp_path / "runs" / "prune_owl_embedded").iterdir()
    assert {"pruning.json", "zeroshot.json", "config.yaml"} <= {p.name for p in run_dir.iterdir()}
    assert cli.trainer.callback_metrics  # perplexity was measured


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("lit_activation.callbacks.WandaPruning", "lit_activation.callbacks.pruning.Pruning"),
        ("lit_activation.callbacks.pruning.WandaPruning", "lit_activation.callbacks.pruning.Pruning"),
        ("lit_activation.allocations.OnTheFlyCounts", "lit_activation.pruning.allocations.OnTheFlyCounts"),
        ("lit_activation.models.load_causal_lm", "lit_activation.models.loading.load_causal_lm"),
        ("lit_activation.plan.plan_memory", "lit_activation.planning.plan.plan_memory"),
        ("lit_activation.pruning.wanda.prune_wanda", "lit_activation.pruning.prune.prune_sequential"),
        ("lit_activation.pruning.wanda.wanda_mask", "lit_activation.pruning.masks.wanda_mask"),
    ],
)
def test_an_old_path_finds_the_same_object_and_says_where_it_moved(old, new):
    import importlib

    def find(path: str) -> object:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)

    with pytest.warns(DeprecatedPath, match=f"^{old} is deprecated; use {new} "):
        found = find(old)
    assert found is find(new)
