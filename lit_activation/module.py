"""ActivationModule: the LightningModule whose predict_step computes Taylor activations.

Scores are never returned: each module's per-sample scores are streamed to the callbacks that
reduce them (counts, LLMDcos, STS), then freed. The module also serves perplexity validation.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric

from lit_activation.callbacks.base import ScoreCallback
from lit_activation.distributed.heartbeat import Heartbeat
from lit_activation.distributed.sharded_loading import load_sharded
from lit_activation.distributed.sharding import own_rows, warn_if_replicated
from lit_activation.engine import EngineSettings, RowRanges, ScoreTile, stream_taylor_scores
from lit_activation.engine.experts import RoutingRecord
from lit_activation.engine.kernels import check_fused
from lit_activation.engine.targets import sequence_nll
from lit_activation.engine.tiling import budget_bytes
from lit_activation.models.architectures import model_config
from lit_activation.models.layers import scored_modules
from lit_activation.models.loading import EMBEDDED_DEFAULT, load_causal_lm, load_tokenizer, resolve_dtype
from lit_activation.planning.memory import GB, available_memory
from lit_activation.planning.plan import check_fits, checked_job, plan_memory

log = logging.getLogger(__name__)


class ActivationModule(LightningModule):
    """Holds a frozen causal LM and scores batches of inputs.

    Args:
        model: `smollm2-135m` (embedded default), a hub id, a local HF directory, a .gguf file, or
            `tiny-<arch>` (random test model).
        dtype: the weights' stored dtype. bf16 halves their memory; scores stay exact fp32 with
            engine.compute_dtype float32.
        engine: how scores are computed (EngineSettings): target (D(s): max_logit, log_prob,
            loss), compute_dtype, matmul (ieee / split / auto), tile_mb, checkpoint_blocks, fused, fused_linear.
        check_memory: before loading the model, predict the run's peak memory (lit-activation
            plan) and stop with the numbers and remedies if it cannot fit. Costs a few seconds.
        trust_remote_code: off by default; only for models you trust.
    """

    def __init__(
        self,
        model: str = EMBEDDED_DEFAULT,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        engine: EngineSettings = EngineSettings(),  # noqa: B008 - frozen: jsonargparse's nested group
        check_memory: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        if torch.finfo(engine.dtype).bits < torch.finfo(resolve_dtype(dtype)).bits:
            raise ValueError(f"engine.compute_dtype {engine.compute_dtype!r} is below dtype {dtype!r}; accepted: {dtype!r} or float32")
        if engine.rows is not None:
            raise ValueError("engine.rows is set by a sharded run for each rank's own rows; leave it unset")
        self.save_hyperparameters()
        self.model: torch.nn.Module | None = None
        self.tokenizer = None
        self.engine = engine  # hparams hold the parsed config (dicts, under LightningCLI); this is the object
        self.rows: RowRanges | None = None  # a sharded rank's own rows of each scored module (None: every row)
        self.token_nll = MeanMetric().set_dtype(torch.float64)  # mean over every token of every rank

    def fresh(self) -> ActivationModule:
        """A new module with this one's options and no weights loaded yet (one run of a comparison)."""
        hp = self.hparams
        return type(self)(model=hp.model, dtype=hp.dtype, engine=self.engine, check_memory=hp.check_memory, trust_remote_code=hp.trust_remote_code)

    @property
    def score_rows(self) -> RowRanges:
        """Per scored module, the rows this rank scores (all rows unless sharded)."""
        return self.rows or {}

    def setup(self, stage: str) -> None:
        """In a multi-process run, every rank watches the others' heartbeats: a rank that dies is named
        and the run stops within a bounded time (distributed/heartbeat.py), its results kept."""
        if stage == "predict":
            hint = f"resume with --resume {self.trainer.log_dir}"  # log_dir: a collective, every rank asks
        else:
            hint = "run the same command again (compare resumes; one validate run starts over)"
        Heartbeat.start(hint)

    def teardown(self, stage: str) -> None:
        if Heartbeat.active is not None and not self.trainer.interrupted:  # after a failure it names the lost ranks
            Heartbeat.active.stop()

    def configure_model(self) -> None:
        # Loaded here, not in __init__: strategies (FSDP) may need to shard it as it is created.
        if self.model is not None:
            return
        hp = self.hparams
        trainer = self._trainer
        if trainer is not None:  # before the weights: one line if a kernel cannot run
            device = trainer.strategy.root_device
            for option in ("fused", "fused_linear"):
                if getattr(self.engine, option):
                    check_fused(device, option)
            self.engine.check_fused_linear(device, self.engine.split_products(device))
        if trainer is not None:  # before the weights: sequences too long for the model, and the memory plan
            job, config = checked_job(self, trainer.datamodule, trainer.callbacks, trainer)
        if hp.check_memory and trainer is not None:  # not after an OOM
            self.memory_plan = plan_memory(job, config, available_memory(job.layout.device_type))
            phase, peak = self.memory_plan.peak()
            log.info("Memory plan: predicted peak %.2f GB per device (%s phase)", peak / GB, phase)
            check_fits(self.memory_plan)
        if self.device_mesh is None:
            self.model, self.tokenizer = load_causal_lm(hp.model, hp.dtype, hp.trust_remote_code)
            self.scored_modules = scored_modules(self.model)
            return
        # ModelParallelStrategy: FSDP2, each rank loads and scores its own rows
        warn_if_replicated(self.device_mesh)
        config = model_config(hp.model, hp.trust_remote_code)
        self.model = load_sharded(hp.model, config, hp.dtype, self.device_mesh, self.engine.dtype, self.trainer.strategy.root_device, hp.trust_remote_code)
        self.tokenizer = load_tokenizer(hp.model, hp.trust_remote_code)
        self.scored_modules = scored_modules(self.model)
        self.rows = own_rows(self.scored_modules, self.device_mesh)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "Taylor scores need gradients, but predict runs under inference mode. "
                "Set `trainer.inference_mode: false` (the shipped configs do)."
            )
        consumers = [cb for cb in self.trainer.callbacks if isinstance(cb, ScoreCallback)]
        if consumers and all(cb.resumed(batch) for cb in consumers):
            return  # a resumed run: this batch's results were written before the interruption
        for cb in consumers:
            cb.on_score_batch_start(self.trainer, self, batch)

        def fan_out(tile: ScoreTile) -> None:
            for cb in consumers:
                cb.on_score_tile(tile)

        def routing(record: RoutingRecord) -> None:
            for cb in consumers:
                cb.on_score_routing(record)

        settings = replace(self.engine, rows=self.rows)
        values = stream_taylor_scores(self.model, batch["input_ids"], batch["attention_mask"], fan_out, settings, self.scored_modules, routing)
        for cb in consumers:
            cb.on_score_batch_end(self.trainer, self, batch, values)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Perplexity over non-overlapping chunks: exp of the mean next-token NLL of all chunks.

        Not torchmetrics' Perplexity: it takes the log of a softmax (underflow for tiny
        probabilities) and holds two more copies of the logits; here the NLL comes from a
        log-softmax over a few positions at a time.
        """
        ids = batch["input_ids"]
        totals, counts = sequence_nll(self.model, ids, budget_bytes(self.engine.tile_mb, ids.device.type))
        self.token_nll.update(totals.sum() / counts.sum(), weight=counts.sum())

    def on_validation_epoch_end(self) -> None:
        # compute() already syncs the ranks; sync_dist on equal values changes nothing and keeps Lightning quiet
        self.log(self.trainer.datamodule.metric_name, self.token_nll.compute().exp(), sync_dist=True)
        self.token_nll.reset()

    def configure_optimizers(self) -> Any:  # nothing is ever trained
        return None
