"""What an allocation or a metric may use: the dense model, its tokenizer, the calibration batch, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from lit_activation.distributed.shards import LOCAL, Shards


@dataclass
class PruningContext:
    """The model being pruned and what its pruning reads (one per pruning run)."""

    model: nn.Module
    tokenizer: Any
    calibration_ids: Tensor  # (samples, seqlen)
    calibration_dataset: str
    calibration_files: str | list[str] | None
    batch_size: int  # calibration sequences per block call or scoring pass
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # a sharded rank's own rows (scores)
    shards: Shards = LOCAL  # how a sharded rank's partial sums combine
