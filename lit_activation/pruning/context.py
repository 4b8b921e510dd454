"""What pruning reads: the calibration batch's settings, and what an allocation or a metric may use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from lit_activation.data.registry import get_spec
from lit_activation.distributed.shards import LOCAL, Shards
from lit_activation.pruning.expert_inputs import ExpertInputs


@dataclass(frozen=True)
class Calibration:
    """The calibration batch: `samples` seeded sequences of `seqlen` tokens of `dataset`.

    Attributes:
        dataset: a registered dataset (paper: c4; Validation 2: mmlu, siqa; offline: news).
        samples, seqlen: the batch (paper: 128 × 2048). seqlen is explicit: the model's maximum
            context (131072 for Llama-3.1) would not fit.
        seed: which windows/examples are drawn.
        files: local file(s) for the dataset (offline use).
        batch_size: calibration sequences per block call (memory ∝ batch_size × seqlen).
    """

    dataset: str = "c4"
    samples: int = 128
    seqlen: int = 2048
    seed: int = 0
    files: str | list[str] | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        get_spec(self.dataset)
        if self.samples < 1 or self.seqlen < 2 or self.batch_size < 1:
            raise ValueError(f"calibration needs samples >= 1, seqlen >= 2, batch_size >= 1; got {self.samples}, {self.seqlen}, {self.batch_size}")


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
    expert_inputs: ExpertInputs = field(default_factory=ExpertInputs)  # a mixture of experts: what each expert is pruned from
    expert_tokens: dict[str, int] = field(default_factory=dict)  # calibration tokens routed to each expert ('<experts module>.<e>', full names)
    expert_sparsity: dict[str, float] = field(default_factory=dict)  # a per-expert allocation's sparsity of each expert
