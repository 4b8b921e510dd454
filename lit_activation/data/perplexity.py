"""Perplexity data (docs/method.md §6): the evaluation text joined with "\\n\\n", tokenized once, cut into
non-overlapping seqlen chunks (the remainder is dropped), one chunk per row."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from lit_activation.data.datamodule import tokenizer_name
from lit_activation.data.registry import check_files, get_spec
from lit_activation.data.samples import chunk_stream, evaluation_stream
from lit_activation.models.loading import load_tokenizer
from lit_activation.planning.plan import EvaluationPass, Footprint, PlanContext

__all__ = ["PerplexityDataModule", "chunk_stream"]  # chunk_stream: in data/samples.py, imported from here before


class PerplexityDataModule(LightningDataModule):
    """Validation batches of non-overlapping chunks of an evaluation corpus.

    Args:
        dataset: a corpus: wikitext2 (test split, the paper's "wikitext2"), c4, or offline `wiki`
            (Wikipedia stand-in, reported as such) / `news`.
        seqlen: tokens per chunk; always reported with the number (5.12 at 4096 ≠ 5.47 at 2048).
        max_chunks: evaluate only the first N chunks (None: all); recorded in the metric name.
        batch_size: chunks per forward pass.
        data_files: local file(s) for the corpus (offline use).
        tokenizer: model whose tokenizer is used; None takes the LightningModule's `model`.
        trust_remote_code: passed to the tokenizer (the CLI links it to the model's setting).
    """

    def __init__(
        self,
        dataset: str = "wiki",
        seqlen: int = 1024,
        max_chunks: int | None = None,
        batch_size: int = 1,
        data_files: str | list[str] | None = None,
        tokenizer: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        spec = get_spec(dataset)
        if spec.kind != "corpus":
            raise ValueError(f"Perplexity needs running text; {dataset!r} is a {spec.kind} set. Corpora: wikitext2, c4, wiki, news")
        self.save_hyperparameters()
        self.chunks: torch.Tensor | None = None

    @property
    def split(self) -> str:
        """Which split the number is on (embedded stand-ins say so)."""
        spec = get_spec(self.hparams.dataset)
        if self.hparams.data_files:
            return "files"
        return "embedded-standin" if spec.embedded is not None or spec.hub is None else spec.hub[2]

    @property
    def metric_name(self) -> str:
        """e.g. `ppl/wikitext2/test/seqlen2048` or `ppl/wiki/embedded-standin/seqlen1024/first16`."""
        hp = self.hparams
        limit = f"/first{hp.max_chunks}" if hp.max_chunks else ""
        return f"ppl/{hp.dataset}/{self.split}/seqlen{hp.seqlen}{limit}"

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """The evaluation passes (the plan): batch_size chunks of seqlen tokens per forward."""
        return EvaluationPass(rows=self.hparams.batch_size, seqlen=self.hparams.seqlen).memory_needs(plan)

    def setup(self, stage: str | None = None) -> None:
        if self.chunks is None:
            if self.hparams.data_files:
                check_files(self.hparams.dataset, self.hparams.data_files)  # before the tokenizer and the model load
            tokenizer = load_tokenizer(tokenizer_name(self.hparams.tokenizer, self), self.hparams.trust_remote_code)
            stream = evaluation_stream(self.hparams.dataset, tokenizer, self.hparams.data_files)
            self.chunks = chunk_stream(stream, self.hparams.seqlen, self.hparams.max_chunks)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.chunks, batch_size=self.hparams.batch_size, collate_fn=lambda rows: {"input_ids": torch.stack(rows)})

