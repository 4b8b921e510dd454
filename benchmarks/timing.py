"""A callback for benchmarks: how long Lightning's predict loop takes, printed for benchmarks/gpu.py."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class PredictTimer(Callback):
    """Prints `PREDICT_LOOP_S <seconds>`, `PREDICT_BATCHES <n>` and, on CUDA, `PEAK_ALLOCATED_GB <peak>`
    (torch's allocator, for the memory plan's prediction) when predict ends (device work included)."""

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.batches, self.start = 0, time.perf_counter()

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:  # noqa: ANN001
        self.batches += 1

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        peak = ""
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            peak = f"\nPEAK_ALLOCATED_GB {torch.cuda.max_memory_allocated() / 2**30:.2f}"
        print(f"PREDICT_LOOP_S {time.perf_counter() - self.start:.3f}\nPREDICT_BATCHES {self.batches}{peak}", flush=True)
