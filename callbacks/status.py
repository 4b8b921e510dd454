"""What a running analysis says: a resumed run's work done and left, the unit of work beside Lightning's
progress bar, and where the results are once it has finished.

The lines are this project's log lines (logger `lit_activation`): `lit-activation` shows them on stderr
and `--quiet` silences them; a script shows them by configuring logging. The unit of work rides on
Lightning's own bar (TQDM or Rich), so it shows where the bar shows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

from lit_activation.callbacks.base import ScoreCallback, run_dir
from lit_activation.planning.plan import Footprint, PlanContext

log = logging.getLogger(__name__)


def resume_line(run: Path, summaries: list[str]) -> str:
    """'resuming runs/counts/version_3: wiki, news done; code, math left' (one summary per kind of work)."""
    return f"resuming {run}: {'; '.join(dict.fromkeys(summaries)) or 'nothing recorded as done'}"


def unit_of_work(datamodule: Any, batch: dict[str, torch.Tensor]) -> str | None:
    """The unit a batch belongs to: `news, dataset 2 of 4` (one dataset at a time, Finding 1), or
    `groups 9-16 of 64` (groups of texts, LLMDcos, STS); None when the batch says neither."""
    names = getattr(datamodule, "dataset_names", None)
    mode = getattr(getattr(datamodule, "hparams", {}), "get", lambda key: None)("mode")
    if mode == "single" and names and "dataset_index" in batch:
        k = int(batch["dataset_index"][0])
        return f"{names[k]}, dataset {k + 1} of {len(names)}"
    groups, total = batch.get("group_index"), getattr(datamodule, "n_groups", None)
    if groups is not None and groups.numel() and total:
        first, last = int(groups.min()) + 1, int(groups.max()) + 1
        return f"group {first} of {total}" if first == last else f"groups {first}-{last} of {total}"
    return None


def show_beside_bar(bar: Callback | None, text: str) -> None:
    """Put `text` in the predict bar's description (Lightning's TQDM or Rich bar); nothing without a bar."""
    if isinstance(bar, TQDMProgressBar) and bar.is_enabled and getattr(bar, "_predict_progress_bar", None) is not None:
        bar.predict_progress_bar.set_description(f"{bar.predict_description} {text}", refresh=False)
    elif isinstance(bar, RichProgressBar) and bar.is_enabled and bar.progress is not None and bar.predict_progress_bar_id is not None:
        bar.progress.update(bar.predict_progress_bar_id, description=f"{bar.predict_description} {text}")


class RunStatus(Callback):
    """Says what a run is doing: on a resumed predict run, one line of what was done and what is left;
    during predict, the unit of work (dataset k of n, or groups) beside the progress bar. Keeps the run
    dir (`run_dir`) for the last line, `results in RUN_DIR`, which `lit-activation` prints after the run.

    `lit-activation` adds it to every run; in a script, add it to the Trainer's callbacks.
    """

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self._announced = False

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """Nothing: it holds no tensors."""
        return Footprint()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.run_dir = run_dir(trainer)  # a collective under DDP: every rank, here
        self._announced = False

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.run_dir = run_dir(trainer)

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self._announced:  # the first batch: every callback has read back what the interrupted run finished
            self._announced = True
            resumed = getattr(trainer, "resume_dir", None)
            if resumed is not None and trainer.is_global_zero:
                summaries = [s for cb in trainer.callbacks if isinstance(cb, ScoreCallback) and (s := cb.progress_summary()) is not None]
                log.info(resume_line(resumed, summaries))
        unit = unit_of_work(trainer.datamodule, batch) if isinstance(batch, dict) else None
        if unit is not None:
            show_beside_bar(trainer.progress_bar_callback, unit)
