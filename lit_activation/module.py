"""ActivationModule: the LightningModule whose predict_step computes Taylor activations.

Scores are never returned: each module's per-sample scores are streamed to the callbacks that
reduce them (counts, LLMDcos, STS), then freed. The module also serves perplexity validation.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric

from lit_activation.callbacks.base import ScoreCallback
from lit_activation.memory import GB
from lit_activation.models import EMBEDDED_DEFAULT, linear_modules, load_causal_lm, resolve_dtype
from lit_activation.plan import check_fits, plan_run
from lit_activation.scores import ScoreTile, stream_taylor_scores
from lit_activation.sharding import own_rows, shard_model
from lit_activation.targets import sequence_nll
from lit_activation.tiling import budget_bytes

log = logging.getLogger(__name__)


class ActivationModule(LightningModule):
    """Holds a frozen causal LM and scores batches of inputs.

    Args:
        model: `smollm2-135m` (embedded default), a hub id, a local HF directory, a .gguf file, or
            `tiny-<arch>` (random test model).
        target: what D(s) is: `max_logit` (the paper), `log_prob`, or `loss`.
        dtype: the weights' stored dtype. bf16 halves their memory.
        compute_dtype: the forward and backward run in it. `float32` (default) gives exact fp32
            scores whatever `dtype` is, upcasting one weight tile at a time (no fp32 copy of the
            model). Setting it to the weights' own bf16/fp16 is the fast, approximate mode
            (README, Performance, gives its deviation).
        tile_mb: memory budget of one tile of per-sample scores (None: benchmarked default per
            device type, 4 MB on CPU, 256 MB on GPUs). Peak memory holds one tile whatever the
            module size; smaller tiles stay in cache.
        checkpoint_blocks: recompute each decoder block's forward in the backward, so that the
            backward holds one block's activations instead of every block's: about a third more
            compute, for models whose activations do not fit (lit-activation plan says when).
        check_memory: before loading the model, predict the run's peak memory (lit-activation
            plan) and stop with the numbers and remedies if it cannot fit. Costs a few seconds.
        trust_remote_code: off by default; only for models you trust.
    """

    def __init__(
        self,
        model: str = EMBEDDED_DEFAULT,
        target: Literal["max_logit", "log_prob", "loss"] = "max_logit",
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        tile_mb: float | None = None,
        checkpoint_blocks: bool = False,
        check_memory: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        if torch.finfo(resolve_dtype(compute_dtype)).bits < torch.finfo(resolve_dtype(dtype)).bits:
            raise ValueError(f"compute_dtype {compute_dtype!r} is below dtype {dtype!r}; accepted: {dtype!r} or float32")
        if tile_mb is not None and tile_mb <= 0:
            raise ValueError(f"tile_mb must be > 0, got {tile_mb}")
        self.save_hyperparameters()
        self.model: torch.nn.Module | None = None
        self.tokenizer = None
        self.score_rows: dict[str, tuple[int, int]] = {}  # all rows; a sharded run scores its own
        self.token_nll = MeanMetric().set_dtype(torch.float64)  # mean over every token of every rank

    def configure_model(self) -> None:
        # Loaded here, not in __init__: strategies (FSDP) may need to shard it as it is created.
        if self.model is None:
            hp = self.hparams
            trainer = self._trainer
            if hp.check_memory and trainer is not None:  # before the weights, not after an OOM
                self.memory_plan = plan_run(self, trainer.datamodule, trainer.callbacks, trainer)
                phase, peak = self.memory_plan.peak()
                log.info("Memory plan: predicted peak %.2f GB per device (%s phase)", peak / GB, phase)
                check_fits(self.memory_plan)
            self.model, self.tokenizer = load_causal_lm(hp.model, hp.dtype, hp.trust_remote_code)
            self.scored_modules = linear_modules(self.model)
            if self.device_mesh is not None:  # ModelParallelStrategy: FSDP2, each rank scores its own rows
                if hp.target == "loss":
                    raise ValueError("target 'loss' is not supported with ModelParallelStrategy (sharding) yet; accepted: max_logit, log_prob")
                shard_model(self.model, self.device_mesh, resolve_dtype(hp.compute_dtype))
                self.score_rows = own_rows(self.scored_modules, self.device_mesh)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "Taylor scores need gradients, but predict runs under inference mode. "
                "Set `trainer.inference_mode: false` (the shipped configs do)."
            )
        consumers = [cb for cb in self.trainer.callbacks if isinstance(cb, ScoreCallback)]
        for cb in consumers:
            cb.on_score_batch_start(self.trainer, self, batch)

        def fan_out(tile: ScoreTile) -> None:
            for cb in consumers:
                cb.on_score_tile(tile)

        hp = self.hparams
        values = stream_taylor_scores(
            self.model, batch["input_ids"], batch["attention_mask"], fan_out, hp.target, self.scored_modules,
            resolve_dtype(hp.compute_dtype), hp.tile_mb, self.score_rows, hp.checkpoint_blocks,
        )
        for cb in consumers:
            cb.on_score_batch_end(self.trainer, self, batch, values)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Perplexity over non-overlapping chunks: exp of the mean next-token NLL of all chunks.

        Not torchmetrics' Perplexity: it takes the log of a softmax (underflow for tiny
        probabilities) and holds two more copies of the logits; here the NLL comes from a
        log-softmax over a few positions at a time.
        """
        ids = batch["input_ids"]
        totals, counts = sequence_nll(self.model, ids, budget_bytes(self.hparams.tile_mb, ids.device.type))
        self.token_nll.update(totals.sum() / counts.sum(), weight=counts.sum())

    def on_validation_epoch_end(self) -> None:
        # compute() already syncs the ranks; sync_dist on equal values changes nothing and keeps Lightning quiet
        self.log(self.trainer.datamodule.metric_name, self.token_nll.compute().exp(), sync_dist=True)
        self.token_nll.reset()

    def configure_optimizers(self) -> Any:  # nothing is ever trained
        return None
