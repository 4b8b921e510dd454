"""How long Lightning's predict loop takes: a callback that prints it, and a run of the CLI with it
(for benchmarks/gpu.py and benchmarks/overhead.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

ROOT = Path(__file__).resolve().parents[1]


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


def cli_run(config: str, model: str, extra: list[str], out: Path, dtype: str = "bfloat16") -> dict:
    """`lit-activation predict --config configs/CONFIG` on `model` as a user runs it, with this
    callback added: wall time, the predict loop's own time, its batches, and the memory plan's
    prediction against torch's peak (CUDA)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable, "-m", "lit_activation", "predict", "--config", str(ROOT / "configs" / config), "--model.model", model,
        "--model.dtype", dtype, "--trainer.logger.init_args.save_dir", str(out), "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+", "timing.PredictTimer", *extra,
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{config}: {done.stderr[-2000:]}")
    text = done.stdout + done.stderr
    out = {"wall_s": wall, "predict_loop_s": float(re.search(r"PREDICT_LOOP_S ([0-9.]+)", text).group(1)),
           "batches": int(re.search(r"PREDICT_BATCHES (\d+)", text).group(1))}
    planned = re.search(r"predicted peak ([0-9.]+) GB", text)
    measured = re.search(r"PEAK_ALLOCATED_GB ([0-9.]+)", text)
    if planned:  # the memory plan against torch's allocator (CUDA)
        out["plan_predicted_gb"] = float(planned.group(1))
    if measured:
        out["peak_allocated_gb"] = float(measured.group(1))
    return out
