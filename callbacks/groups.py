"""Shared by the LLMDcos, STS and all-pairs callbacks: per-group, per-layer Gram matrices of the
scores, and (for the pair-similarity jobs) of the mean-pooled hidden states, the baseline."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer

from lit_activation import outputs
from lit_activation.analyses.baselines import BlockOutputGram
from lit_activation.analyses.similarity import cosine_from_gram
from lit_activation.callbacks.base import Progress, ScoreCallback, all_reduce_sum, run_dir
from lit_activation.distributed.sharding import shard_rank, shards
from lit_activation.engine.reduce import LayerGram
from lit_activation.engine.scores import ScoreTile
from lit_activation.files import BrokenFile
from lit_activation.models.architectures import model_config
from lit_activation.models.layers import decoder_layers, layer_map, num_layers_of
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.resume import REDO


class GroupGramCallback(ScoreCallback):
    """Collects, for every group of the epoch, its (layers, rows, rows) Gram matrix.

    A group never spans replicas, so each entry comes from one rank, or, when sharded, from the
    ranks of one shard group, each holding the sum over its own weight rows: summing the ranks'
    zero-initialised tables gives every Gram exactly. Only these few numbers per pair cross ranks,
    never a score vector.

    With `hidden_baseline`, forward hooks on the decoder blocks also take, from the same scoring
    forward, the Gram of each group's mean-pooled block outputs per layer (`hidden_cos` at the
    end). Those states are whole on every rank of a shard group: one rank of it records them.
    """

    outputs: tuple[str, ...] = ()
    hidden_baseline: bool = False  # also the hidden-state cosines (lit_activation.analyses.baselines)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Before the weights load: the layer options against the depth the model's config gives
        (checked again on the loaded model's layers at the start of scoring)."""
        super().setup(trainer, pl_module, stage)
        hp = pl_module.hparams
        self.check_layers(num_layers_of(model_config(hp.model, hp.trust_remote_code)))

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """Per group and layer, the Gram matrix of its rows (fp64, host RAM; twice with the hidden-state
        baseline); per batch, its Gram matrices and one tile's per-sample scores on the device. At the
        end each table's cosines are formed beside the tables."""
        data = plan.datamodule
        if data is None:
            return Footprint()
        groups, size, layers = data.n_groups, data.group_size, plan.n_layers
        tables = 2 if self.hidden_baseline else 1
        table, small = groups * layers * size**2 * 8, 2 * groups * 8  # gold and seen: one value per group
        rows = min(data.hparams.batch_size, groups) * size
        one_tile = min(plan.tile_bytes, rows * plan.params.largest_scored * 4)
        return (
            Footprint()
            .add("scoring", "Gram tables (fp64)", tables * table + small, on_host=True)
            .add("scoring", "Gram of one batch (fp64)", tables * min(data.hparams.batch_size, groups) * layers * size**2 * 8)
            .add("scoring", "scores of one tile (fp32)", one_tile)
            .add("cosines", "Gram tables and their cosines (fp64)", (2 * tables + 1) * table + small, on_host=True)
        )

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.out = run_dir(trainer)  # a collective under DDP: resolve on every rank
        self.progress = Progress(trainer, "groups")
        if trainer.is_global_zero:
            self.progress.discard_partial_results(self.outputs)
            outputs.check_new(self.out / f for f in self.outputs)
        dm = trainer.datamodule
        layer_of, _, n_layers = layer_map(pl_module.model)
        self.gram = LayerGram(layer_of, n_layers)
        self.check_layers(self.gram.n_layers)  # fail before scoring, not after
        shape = (len(dm.groups), self.gram.n_layers, dm.group_size, dm.group_size)
        self.grams = torch.zeros(shape, dtype=torch.float64)
        self.gold = torch.zeros(len(dm.groups), dtype=torch.float64)
        self.seen = torch.zeros(len(dm.groups), dtype=torch.int64)
        self.hidden_cos: torch.Tensor | None = None
        if self.hidden_baseline:
            self.hidden = BlockOutputGram(decoder_layers(pl_module.model)[1])
            self.hidden_grams = torch.zeros_like(self.grams)
        self.done: set[int] = set()
        for file, saved in self.progress.load_tensors():  # a resumed run: the batches finished before
            index = saved["index"]
            if int(index.max()) >= len(dm.groups) or any(saved[k].shape[1:] != shape[1:] for k in saved if k in ("grams", "hidden")):
                raise BrokenFile(file, f"does not fit this run's {len(dm.groups)} groups of {shape[2]} rows in {shape[1]} layers", REDO)
            self.done.update(index.tolist())
            if trainer.is_global_zero:  # one rank holds them: the sums over ranks count them once
                self.record(index, saved["grams"], saved["gold"], saved.get("hidden"))

    def resumed(self, batch: dict[str, torch.Tensor]) -> bool:
        return set(batch["group_index"].tolist()) <= self.done

    def progress_summary(self) -> str:
        total = len(self.grams)
        return f"{len(self.done)} of {total} groups done; {total - len(self.done)} left"

    def record(self, index: torch.Tensor, grams: torch.Tensor, gold: torch.Tensor, hidden: torch.Tensor | None) -> None:
        """Keep finished groups' Gram tables (complete over every weight row), gold scores and hidden-state Grams."""
        self.grams[index] = grams
        self.gold[index] = gold
        self.seen[index] += 1
        if hidden is not None:
            self.hidden_grams[index] = hidden

    def on_score_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor]) -> None:
        groups = batch["group_index"]
        rows = batch["input_ids"].shape[0] // groups.numel()
        self.gram.begin(groups.numel(), rows, batch["input_ids"].device, "groups", groups.repeat_interleave(rows).tolist())
        if self.hidden_baseline:  # hooks live from here to the batch's end (or an error): the scoring forward only
            self.hidden.begin(batch["attention_mask"], groups.numel())
            self.hidden.attach()

    def on_score_tile(self, tile: ScoreTile) -> None:
        self.gram.update(tile)

    def on_score_batch_end(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor], values: torch.Tensor) -> None:
        self.gram.end()  # NaN/inf in the batch's scores stops the run here, naming module and samples
        index = batch["group_index"].cpu()
        grams = shards(trainer).sum(self.gram.gram.double().cpu())  # a sharded rank's rows: partial sums, added over its shard group
        hidden = None
        if self.hidden_baseline:
            self.hidden.detach()
            hidden = self.hidden.finish().cpu()  # whole on every rank of the shard group
        if shard_rank(trainer) == 0:  # the ranks of a shard group score the same groups: one of them keeps them
            gold = batch["gold"].double().cpu()
            self.record(index, grams, gold, hidden)
            finished = {"index": index, "grams": grams, "gold": gold} | ({"hidden": hidden} if hidden is not None else {})
            self.progress.save_tensors(f"{int(index[0]):08d}", finished)  # a killed run resumes after it

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self.hidden_baseline and hasattr(self, "hidden"):
            self.hidden.detach()  # never leave hooks on a model that outlives the failed run

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.grams = all_reduce_sum(trainer, self.grams)
        self.gold = all_reduce_sum(trainer, self.gold)
        self.seen = all_reduce_sum(trainer, self.seen)
        if not bool((self.seen == 1).all()):
            raise RuntimeError(f"Every group must be scored exactly once; counts seen: {self.seen.tolist()}")
        if self.hidden_baseline:
            self.hidden_cos = cosine_from_gram(all_reduce_sum(trainer, self.hidden_grams))
            if not bool(torch.isfinite(self.hidden_cos).all()):
                raise FloatingPointError("NaN/inf hidden-state cosine: a mean-pooled block output is zero or not finite")
        cos = cosine_from_gram(self.grams)
        if not bool(torch.isfinite(cos).all()):
            group, layer, row, _ = (int(i) for i in (~torch.isfinite(cos)).nonzero()[0])
            raise FloatingPointError(
                f"NaN/inf LLMDcos in group {group}, layer {layer} (row {row} of the group): an input has all-zero scores "
                "in that layer (gradients off, or a low-precision compute_dtype underflowing?)"
            )
        if trainer.is_global_zero:
            self.report(trainer, pl_module, cos)
            self.progress.clear()

    def check_layers(self, n_layers: int) -> None:
        """Raise if the configured layer ranges do not fit the model."""

    def report(self, trainer: Trainer, pl_module: LightningModule, cos: torch.Tensor) -> None:
        """Write and log the results; cos: (groups, layers, rows, rows)."""
        raise NotImplementedError
