"""The command line built as a user's command builds it, with the subcommand recorded instead of run."""

from __future__ import annotations

import functools

import pytest

from lit_activation.cli import ActivationCLI, build_cli
from lit_activation.trainer import ActivationTrainer
from tests.helpers import ROOT


def build_not_run(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[ActivationCLI, list[dict]]:
    """Build the CLI for `args`: every class they name is instantiated, so each one's own checks in
    `__init__` run; the subcommand is recorded, not run (nothing loads). Returns the CLI and the
    recorded calls' keyword arguments (one per run)."""
    sub = args[0]
    calls: list[dict] = []

    @functools.wraps(getattr(ActivationTrainer, sub))  # the CLI reads the subcommand's options from its signature
    def record(self, *a, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(kwargs)

    monkeypatch.setattr(ActivationTrainer, sub, record)
    # whether a hub model can be read here is the machine's (tests have no network), not the command's: test_errors.py
    monkeypatch.setattr("lit_activation.cli.app.check_source", lambda name, **options: None)
    return build_cli(args), calls


def subcommand_parsers() -> dict:
    """Each subcommand's parser, as a command that names it builds it (each takes about a second)."""
    captured = {}

    class Built(Exception):
        pass

    def keep(self, parser, args):  # noqa: ANN001, ANN202
        captured.update(self._subcommand_parsers)
        raise Built

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ActivationCLI, "parse_arguments", keep)
        for sub in ActivationCLI.subcommands():
            with pytest.raises(Built):
                build_cli([sub])
    return captured


def parse_command(parsers: dict, words: list[str]):  # noqa: ANN201 - jsonargparse's Namespace
    """The options a `lit-activation <subcommand> ...` line sets, parsed (not instantiated) by its
    subcommand's parser from `subcommand_parsers()`; `configs/` is the repository's."""
    args = [w.replace("configs/", f"{ROOT / 'configs'}/") if w.startswith("configs/") else w for w in words[2:]]
    return parsers[words[1]].parse_args(args)
