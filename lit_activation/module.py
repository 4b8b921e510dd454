"""ActivationModule: the LightningModule whose predict_step computes Taylor activations.

Scores are never returned: each module's per-sample scores are streamed to the callbacks that
reduce them (counts, LLMDcos, STS), then freed. The module also serves perplexity validation.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torchmetrics.text import Perplexity

from lit_activation.models import EMBEDDED_DEFAULT, linear_modules, load_causal_lm
from lit_activation.scores import stream_taylor_scores


class ActivationModule(LightningModule):
    """Holds a frozen causal LM and scores batches of inputs.

    Args:
        model: `smollm2-135m` (embedded default), a hub id, a local HF directory, a .gguf file, or
            `tiny-<arch>` (random test model).
        target: what D(s) is: `max_logit` (the paper), `log_prob`, or `loss`.
        dtype: weights' dtype; scores are computed in fp32 whatever it is. bf16 halves memory.
        trust_remote_code: off by default; only for models you trust.
    """

    def __init__(
        self,
        model: str = EMBEDDED_DEFAULT,
        target: Literal["max_logit", "log_prob", "loss"] = "max_logit",
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model: torch.nn.Module | None = None
        self.tokenizer = None
        self.perplexity = Perplexity()

    def configure_model(self) -> None:
        # Loaded here, not in __init__: strategies (FSDP) may need to shard it as it is created.
        if self.model is None:
            hp = self.hparams
            self.model, self.tokenizer = load_causal_lm(hp.model, hp.dtype, hp.trust_remote_code)
            self.scored_modules = linear_modules(self.model)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "Taylor scores need gradients, but predict runs under inference mode. "
                "Set `trainer.inference_mode: false` (the shipped configs do)."
            )
        consumers = [cb for cb in self.trainer.callbacks if hasattr(cb, "on_module_scores")]
        for cb in consumers:
            cb.on_score_batch_start(self.trainer, self, batch)

        def fan_out(name: str, scores: torch.Tensor) -> None:
            for cb in consumers:
                cb.on_module_scores(name, scores)

        values = stream_taylor_scores(
            self.model, batch["input_ids"], batch["attention_mask"], fan_out, self.hparams.target, self.scored_modules
        )
        for cb in consumers:
            cb.on_score_batch_end(self.trainer, self, batch, values)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Perplexity over non-overlapping chunks: exp of the mean next-token NLL of all chunks."""
        ids = batch["input_ids"]
        logits = self.model(input_ids=ids, use_cache=False).logits
        self.perplexity.update(logits[:, :-1].float(), ids[:, 1:])
        self.log(self.trainer.datamodule.metric_name, self.perplexity, on_epoch=True, batch_size=ids.shape[0])

    def configure_optimizers(self) -> Any:  # nothing is ever trained
        return None
