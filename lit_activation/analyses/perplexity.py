"""Validation 1's number: a model's perplexity on a corpus (docs/method.md §6), for a model you hold.

The text is joined and tokenized once, cut into non-overlapping `seqlen` chunks (the remainder dropped),
and the perplexity is exp of the mean next-token NLL over every predicted token of every chunk: the
same data (PerplexityDataModule's chunks) and the same NLLs (`sequence_nll`) as `lit-activation validate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lit_activation.data.samples import chunk_stream, evaluation_stream
from lit_activation.engine.targets import sequence_nll
from lit_activation.engine.tiling import budget_bytes


@torch.no_grad()
def perplexity(
    model: nn.Module,
    tokenizer: Any,
    dataset: str = "wiki",
    seqlen: int = 1024,
    max_chunks: int | None = None,
    batch_size: int = 1,
    data_files: str | Sequence[str] | None = None,
    tile_mb: float | None = None,
) -> float:
    """Perplexity of `model` on a corpus: exp(Σ NLL / number of predicted tokens) over its seqlen chunks.

    Args:
        model, tokenizer: a causal LM you hold (pruned or not) and its tokenizer.
        dataset: a corpus: wikitext2, c4, or offline `wiki` / `news` (stand-ins, reported as such).
        seqlen: tokens per chunk; a perplexity is only comparable at the same seqlen.
        max_chunks: the first N chunks only (None: all).
        batch_size: chunks per forward pass.
        data_files: local file(s) for the corpus (offline use).
        tile_mb: memory for the logits of a few positions at a time (None: the engine's default).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = chunk_stream(evaluation_stream(dataset, tokenizer, data_files), seqlen, max_chunks)
    device = next(model.parameters()).device
    total, count = torch.zeros((), dtype=torch.float64), 0
    training = model.training
    model.eval()  # as an evaluation runs (no dropout); the model's mode is given back after
    try:
        for batch in chunks.split(batch_size):
            totals, counts = sequence_nll(model, batch.to(device), budget_bytes(tile_mb, device.type))
            total += totals.double().sum().cpu()
            count += int(counts.sum())
    finally:
        model.train(training)
    return float(torch.exp(total / count))
