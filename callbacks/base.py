"""What the analysis callbacks share: the score-stream protocol, the run dir, logging results, reduction."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from matplotlib.figure import Figure

from lit_activation import loggers, outputs
from lit_activation.engine.experts import RoutingRecord
from lit_activation.engine.scores import ScoreTile
from lit_activation.resume import PROGRESS, read_progress_json, read_progress_tensors


class ScoreCallback(Callback):
    """A callback fed by ActivationModule.predict_step: batch start, each score tile, batch end.

    `data_modes` lists the ActivationDataModule modes whose batches it understands; a run with
    another mode stops at setup, before the model is loaded.
    """

    data_modes: tuple[str, ...] = ("single", "pairs", "sts")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        mode = getattr(getattr(trainer.datamodule, "hparams", {}), "get", lambda k: None)("mode")
        if mode not in self.data_modes:
            raise ValueError(
                f"{type(self).__name__} needs data mode {' or '.join(map(repr, self.data_modes))}, got {mode!r}: "
                f"set data.init_args.mode (ActivationDataModule)"
            )

    def resumed(self, batch: dict[str, torch.Tensor]) -> bool:
        """Whether this batch's work is done already, in the run being resumed (its progress read back):
        a batch every score callback has done is not scored again."""
        return False

    def progress_summary(self) -> str | None:
        """A resumed run's work, as its one status line says it: e.g. 'wiki, news done; code, math left'
        (read after `on_predict_start` has loaded the progress); None: nothing to say."""
        return None

    def on_score_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor]) -> None:
        """A batch is about to be scored."""

    def on_score_tile(self, tile: ScoreTile) -> None:
        """Rows of one module's per-sample scores (see ScoreTile); valid only during this call."""

    def on_score_routing(self, record: RoutingRecord) -> None:
        """A mixture of experts routed the batch's real tokens in one MoE block (see RoutingRecord)."""

    def on_score_batch_end(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor], values: torch.Tensor) -> None:
        """Every module of the batch has been scored; `values` holds D(s) per row."""


def run_dir(trainer: Trainer) -> Path:
    """This run's versioned output directory (the logger's version dir, e.g. runs/counts/version_3; the
    rule for each logger: `lit_activation.loggers.run_dir_of`).

    A collective under DDP (rank 0 broadcasts it): call it on every rank, never inside a rank-0 branch.
    """
    return Path(trainer.strategy.broadcast(str(loggers.run_dir_of(trainer.loggers, trainer.default_root_dir))))


def resuming(trainer: Trainer) -> bool:
    """Whether this run resumes an interrupted one in its run dir (`predict --resume`)."""
    return getattr(trainer, "resume_dir", None) is not None


class Progress:
    """A run's finished units of work, one file each in its run dir's progress/<part>/, so that an
    interrupted run can be resumed (lit_activation/resume.py). Each file is written atomically by
    the rank that holds the unit complete, the moment it is finished; `clear` removes them once the
    run's results are written.
    """

    def __init__(self, trainer: Trainer, part: str) -> None:
        self.dir = run_dir(trainer) / PROGRESS / part  # run_dir: a collective, on every rank
        self.resuming = resuming(trainer)

    def save_json(self, key: str, record: dict) -> None:
        outputs.write_json(self.dir / f"{key}.json", record)

    def load_json(self) -> list[dict]:
        """Every saved record, in the order of their keys (each checked: resume.read_progress_json)."""
        return [read_progress_json(p) for p in sorted(self.dir.glob("*.json"))] if self.resuming else []

    def save_tensors(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        outputs.write_tensors(self.dir / f"{key}.safetensors", {name: t.detach().cpu() for name, t in tensors.items()})

    def load_tensors(self) -> list[tuple[Path, dict[str, torch.Tensor]]]:
        """Every saved set of tensors with its file, in the order of their keys (each checked: resume.read_progress_tensors)."""
        return [(p, read_progress_tensors(p)) for p in sorted(self.dir.glob("*.safetensors"))] if self.resuming else []

    def discard_partial_results(self, names: Iterable[str]) -> None:
        """A resumed run writes its results again: remove what an interrupted final write left."""
        if self.resuming:
            for name in names:
                (self.dir.parents[1] / name).unlink(missing_ok=True)

    def clear(self) -> None:
        """The results are written: the finished units are no longer needed."""
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # other parts' progress may still be there
            self.dir.parent.rmdir()


def log_results(
    trainer: Trainer,
    scalars: Mapping[str, float] = {},  # noqa: B006 - read only
    per_layer: Mapping[str, Sequence[float]] = {},  # noqa: B006 - read only
    figures: Mapping[str, Figure] = {},  # noqa: B006 - read only
) -> None:
    """A run's results in its loggers (rank 0): scalars and per-layer series (step = layer) through every
    logger, figures through each that holds them (lit_activation/loggers.py)."""
    loggers.log_scalars(trainer.loggers, scalars)
    for tag, values in per_layer.items():
        for layer, value in enumerate(values):
            loggers.log_scalars(trainer.loggers, {tag: value}, step=layer)
    loggers.log_figures(trainer.loggers, figures, Path(loggers.run_dir_of(trainer.loggers, trainer.default_root_dir)))
    for logger in trainer.loggers:
        logger.save()


def all_reduce_sum(trainer: Trainer, tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks once, in place where possible (no world_size-fold gather)."""
    if trainer.world_size == 1:
        return tensor
    # Moved to the strategy's device because NCCL cannot reduce CPU tensors.
    reduced = trainer.strategy.reduce(tensor.to(trainer.strategy.root_device), reduce_op="sum")
    return reduced.to(tensor.device)


def model_name(pl_module: LightningModule) -> str:
    """The model's configured name, for titles and reports."""
    return str(pl_module.hparams.get("model", type(pl_module.model).__name__))
