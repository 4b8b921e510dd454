"""A test-only callback: what each rank holds, to prove that sharding happens (tests/test_ddp.py)."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_activation.callbacks.counts import ActivationCounts
from lit_activation.sharding import local


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
