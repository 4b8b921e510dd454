"""From a method name to one sparsity per decoder layer: uniform, activation (the paper), OWL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from lit_activation import counts as C
from lit_activation.data.datamodule import Group, pad_groups
from lit_activation.models import decoder_layers, layer_map, linear_modules
from lit_activation.reduce import ScoreSum
from lit_activation.scores import stream_taylor_scores
from lit_activation.sparsity import activation_sparsity, owl_from_ratios, uniform_sparsity
from lit_activation.wanda import owl_outlier_ratios

Allocation = Literal["uniform", "activation", "owl"]


def activation_layer_counts(model: nn.Module, samples: Sequence[Sequence[int]], gamma: float, batch_size: int = 4) -> list[int]:
    """Finding 1 counts on the fly: per layer, parameters whose mean Taylor score over `samples` exceeds γ."""
    modules = linear_modules(model)
    sums = ScoreSum(modules)
    device = next(model.parameters()).device
    for start in range(0, len(samples), batch_size):
        # pad id 0 is harmless: padded positions are masked out of the scores
        batch = pad_groups([Group(i, [list(r)], [0]) for i, r in enumerate(samples[start : start + batch_size])], pad_id=0)
        rows = len(batch["input_ids"])
        sums.begin(rows, "the on-the-fly activation counts", range(start, start + rows))
        stream_taylor_scores(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), sums.update, modules=modules)
    layer_of, _, n_layers = layer_map(model)
    return C.layer_counts(sums.means(), layer_of, n_layers, gamma).tolist()


def layer_sparsities(
    method: Allocation,
    model: nn.Module,
    sparsity: float,
    calibration_ids: torch.Tensor | None = None,
    counts: Sequence[float] | None = None,
    alpha: float = 2.0,
    beta: float = 0.2,
    owl_m: float = 5.0,
    owl_lambda: float = 0.08,
    batch_size: int = 1,
) -> list[float]:
    """One sparsity per layer for `method`; `counts` (activation) and `calibration_ids` (owl) as needed."""
    n_layers = len(decoder_layers(model)[1])
    if method == "uniform":
        return uniform_sparsity(n_layers, sparsity)
    if method == "activation":
        if counts is None or len(counts) != n_layers:
            raise ValueError(f"activation allocation needs one count per layer ({n_layers}); got {None if counts is None else len(counts)}")
        return activation_sparsity(counts, sparsity, alpha, beta)
    if method == "owl":
        if calibration_ids is None:
            raise ValueError("OWL allocation needs calibration_ids")
        return owl_from_ratios(owl_outlier_ratios(model, calibration_ids, owl_m, batch_size), sparsity, owl_lambda)
    raise ValueError(f"Unknown allocation {method!r}; accepted: ['uniform', 'activation', 'owl']")
