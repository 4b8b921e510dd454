"""Test-only callbacks for the multi-process tests: what each rank holds, which batches it scored, and a rank that dies."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_activation.callbacks.counts import ActivationCounts
from lit_activation.distributed.sharding import local


class ShardProbe(Callback):
    """Writes out_dir/rank<r>.json: per scored module, its weight's local and global sizes and the
    local size of the Finding 1 accumulator's rows, taken at the first batch."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int, dataloader_idx: int = 0) -> None:  # noqa: ANN001
        if batch_idx:
            return
        counts = next(cb for cb in trainer.callbacks if isinstance(cb, ActivationCounts))
        sizes = {
            name: {"weight_local": local(m.weight).numel(), "weight": m.weight.numel(), "state": counts.sums.sums[name].numel()}
            for name, m in pl_module.scored_modules.items()
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(sizes))


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS: resident now, VmHWM: the peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class LoadMemoryProbe(Callback):
    """Writes out_dir/rank<r>.json: this process's resident memory when the model starts loading
    (configure_model) and its peak until it is loaded (Linux: the kernel's peak, VmHWM, reset first).
    Measured by the kernel, not from FSDP's metadata."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        load = pl_module.configure_model  # Lightning calls setup hooks first, then configure_model

        def measured() -> None:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            baseline = _status("VmRSS")
            load()
            self.out_dir.mkdir(parents=True, exist_ok=True)
            record = {"baseline": baseline, "peak": _status("VmHWM")}
            (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))

        pl_module.configure_model = measured


class BatchProbe(Callback):
    """Writes out_dir/rank<r>.json: the group indices of every batch this rank scored."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir, self.groups = Path(out_dir), []

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int, dataloader_idx: int = 0) -> None:  # noqa: ANN001
        self.groups += batch["group_index"].tolist()

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.groups))


class MetricStateProbe(Callback):
    """Writes out_dir/rank<r>.json after pruning: per scored module, the rank's own rows of the weight
    as stored (its shard) and the per-parameter state its pruning metric kept (Taylor's mean scores,
    GBLM's gradient squares), to show which rows a sharded rank keeps."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from lit_activation.callbacks.pruning import Pruning

        metric = next(cb for cb in trainer.callbacks if isinstance(cb, Pruning)).metric
        state = getattr(metric, "_means", None) or metric._squares  # the metric's own state (test-only read)
        rows = pl_module.score_rows
        record = {
            name: {"own_rows": list(rows.get(name, (0, m.weight.shape[0]))), "state": state[name].tolist()}
            for name, m in pl_module.scored_modules.items()
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class KillRank(Callback):
    """Kills this process (SIGKILL, as the OOM killer does) on rank `rank` when it has scored a batch
    of dataset `dataset` (having finished the datasets before it with the other ranks), once the run
    has written its first finished dataset (progress_dir/0000.json)."""

    def __init__(self, rank: int, dataset: int, progress_dir: str) -> None:
        self.rank, self.dataset, self.progress = rank, dataset, Path(progress_dir)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:  # noqa: ANN001
        if trainer.global_rank != self.rank or int(batch["dataset_index"][0]) < self.dataset:
            return
        for _ in range(600):  # rank 0 writes it right after the collective that finished the dataset
            if (self.progress / "0000.json").is_file():
                break
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGKILL)
