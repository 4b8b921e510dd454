"""A Lightning Trainer as the analyses' callbacks run under (CPU, gradients on, TensorBoard)."""

from __future__ import annotations

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger


def trainer_for(tmp_path, callback) -> Trainer:
    """A one-device CPU Trainer with `callback`, logging under tmp_path."""
    return Trainer(
        accelerator="cpu", devices=1, inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t"),
        callbacks=[callback], enable_progress_bar=False, enable_model_summary=False,
    )
