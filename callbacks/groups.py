"""Shared by the LLMDcos and STS callbacks: per-group, per-layer Gram matrices of the scores."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer

from lit_activation import io
from lit_activation.callbacks.base import ScoreCallback, all_reduce_sum, run_dir
from lit_activation.models import layer_map
from lit_activation.reduce import LayerGram
from lit_activation.scores import ScoreTile
from lit_activation.sharding import shard_rank
from lit_activation.similarity import cosine_from_gram


class GroupGramCallback(ScoreCallback):
    """Collects, for every group of the epoch, its (layers, rows, rows) Gram matrix.

    A group never spans replicas, so each entry comes from one rank, or, when sharded, from the
    ranks of one shard group, each holding the sum over its own weight rows: summing the ranks'
    zero-initialised tables gives every Gram exactly. Only these few numbers per pair cross ranks,
    never a score vector.
    """

    outputs: tuple[str, ...] = ()

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.out = run_dir(trainer)  # a collective under DDP: resolve on every rank
        if trainer.is_global_zero:
            io.check_new(self.out / f for f in self.outputs)
        dm = trainer.datamodule
        layer_of, _, n_layers = layer_map(pl_module.model)
        self.gram = LayerGram(layer_of, n_layers)
        self.check_layers(self.gram.n_layers)  # fail before scoring, not after
        shape = (len(dm.groups), self.gram.n_layers, dm.group_size, dm.group_size)
        self.grams = torch.zeros(shape, dtype=torch.float64)
        self.gold = torch.zeros(len(dm.groups), dtype=torch.float64)
        self.seen = torch.zeros(len(dm.groups), dtype=torch.int64)

    def on_score_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor]) -> None:
        groups = batch["group_index"]
        rows = batch["input_ids"].shape[0] // groups.numel()
        self.gram.begin(groups.numel(), rows, batch["input_ids"].device, "groups", groups.repeat_interleave(rows).tolist())

    def on_score_tile(self, tile: ScoreTile) -> None:
        self.gram.update(tile)

    def on_score_batch_end(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor], values: torch.Tensor) -> None:
        index = batch["group_index"].cpu()
        self.grams[index] = self.gram.gram.double().cpu()  # a sharded rank's rows: partial sums, added across ranks
        if shard_rank(trainer) == 0:  # the ranks of a shard group score the same groups: one of them counts them
            self.gold[index] = batch["gold"].double().cpu()
            self.seen[index] += 1

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.grams = all_reduce_sum(trainer, self.grams)
        self.gold = all_reduce_sum(trainer, self.gold)
        self.seen = all_reduce_sum(trainer, self.seen)
        if not bool((self.seen == 1).all()):
            raise RuntimeError(f"Every group must be scored exactly once; counts seen: {self.seen.tolist()}")
        cos = cosine_from_gram(self.grams)
        if not bool(torch.isfinite(cos).all()):
            group, layer, row, _ = (int(i) for i in (~torch.isfinite(cos)).nonzero()[0])
            raise FloatingPointError(
                f"NaN/inf LLMDcos in group {group}, layer {layer} (row {row} of the group): an input has all-zero scores "
                "in that layer (gradients off, or a low-precision compute_dtype underflowing?)"
            )
        if trainer.is_global_zero:
            self.report(trainer, pl_module, cos)

    def check_layers(self, n_layers: int) -> None:
        """Raise if the configured layer ranges do not fit the model."""

    def report(self, trainer: Trainer, pl_module: LightningModule, cos: torch.Tensor) -> None:
        """Write and log the results; cos: (groups, layers, rows, rows)."""
        raise NotImplementedError
