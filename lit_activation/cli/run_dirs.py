"""Run directories: an explicit version that exists is refused, what a failed run created and left empty is removed
(a W&B run's dir too, named by its id), and a resumed run's config is held against this one in what changes results.
Which dir a run writes to, whatever its loggers: lit_activation/loggers.py."""

from __future__ import annotations

import fnmatch
import importlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger


def check_new_log_dirs(loggers: list, config) -> None:  # noqa: ANN001 - the parsed `trainer.logger` value
    """A logger given an explicit version must not point at an existing run dir (runs/NAME/version_N).

    Checked after the classes are built and before the subcommand runs, so the model is never loaded
    for a run that would stop at Lightning's SaveConfigCallback (config.yaml exists) or overwrite results.
    Loggers without a version (the default) take the next free version_N and are not checked.
    """
    configs = config if isinstance(config, list) else [config]
    for logger, entry in zip(loggers, configs, strict=False):
        init_args = getattr(entry, "init_args", None) or {}
        version = init_args.get("version") if hasattr(init_args, "get") else None
        if version is None or not isinstance(logger, (TensorBoardLogger, CSVLogger)):
            continue
        path = Path(logger.log_dir)
        if path.exists():
            raise FileExistsError(
                f"log dir {path} already exists (trainer.logger version {version!r}); a run's results are never overwritten. "
                "Choose another --trainer.logger.init_args.version or name, or leave version unset (null) for the next free version_N"
            )


# What Lightning writes into a run dir before any result. A run that fails with only these in its new
# dir has that dir removed: it would take a version number and look like a run, holding nothing.
BOOKKEEPING = ("config.yaml", "hparams.yaml", "events.out.tfevents.*")


def discard_empty_run_dirs(paths: list[Path], parents: Sequence[Path] = ()) -> None:
    """Remove each of `paths` (run dirs this process created) that holds nothing but BOOKKEEPING files,
    then each of `parents` (the dirs above them this process created, deepest first) left empty."""
    for path in paths:
        if path.is_dir() and all(f.is_file() and any(fnmatch.fnmatch(f.name, p) for p in BOOKKEEPING) for f in path.iterdir()):
            shutil.rmtree(path)
    for parent in parents:
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def missing_parents(path: Path) -> list[Path]:
    """The dirs above `path` that do not exist yet, deepest first: those creating it would create."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def analyses_only(config: dict) -> dict:
    """The config with only the callbacks that produce a predict run's results (score callbacks):
    others (progress, logging, probes) may differ in a resumed run."""
    from lit_activation.callbacks.base import ScoreCallback

    def scores(entry: object) -> bool:
        path = entry.get("class_path") if isinstance(entry, dict) else None
        module, _, name = path.rpartition(".") if isinstance(path, str) else ("", "", "")
        try:
            return issubclass(getattr(importlib.import_module(module), name), ScoreCallback)
        except (ImportError, AttributeError, ValueError, TypeError):
            return True  # a class that cannot be imported here is compared as it is

    trainer = config.get("trainer") or {}
    callbacks = trainer.get("callbacks")
    if isinstance(callbacks, list):
        config = {**config, "trainer": {**trainer, "callbacks": [c for c in callbacks if scores(c)]}}
    return config


@dataclass
class IdNamedRuns:
    """The run dirs a W&B logger names by its run's id (save_dir/project/<id>, unknown until the run
    starts): those that appear while this process runs are its own, and a failed run's empty one goes."""

    parent: Path
    before: frozenset[Path]

    @classmethod
    def of(cls, loggers: Sequence[Logger], default_root_dir: str | Path) -> IdNamedRuns | None:
        """For a run whose dir a W&B logger names (no TensorBoard or CSV logger, W&B first); else None.
        MLflow's run dir is never empty (MLflow's own files are there): nothing to watch."""
        if not loggers or not isinstance(loggers[0], WandbLogger):
            return None
        parent = Path(loggers[0].save_dir or default_root_dir) / str(loggers[0].name)
        return cls(parent, frozenset(parent.iterdir()) if parent.is_dir() else frozenset())

    def new(self) -> list[Path]:
        """The dirs under `parent` that were not there before."""
        return [p for p in self.parent.iterdir() if p not in self.before] if self.parent.is_dir() else []
