"""LLMDcos (docs/method.md §3): per layer, the cosine of two inputs' activation-score vectors.

LLMDcos(s1, s2) at layer l = cos(A(s1), A(s2)) over the layer's linear modules concatenated. It is
computed from streamed sums Σ a·b, Σ a², Σ b² (a Gram matrix per group of rows), so no score
vector is ever stored. Pure PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from lit_activation.engine import EngineSettings, LayerGram, stream_taylor_scores
from lit_activation.models.layers import layer_map


def cosine_from_gram(gram: Tensor) -> Tensor:
    """Cosines (..., R, R) from Gram matrices (..., R, R); a zero-norm row gives NaN (0/0), not 0."""
    norm = gram.diagonal(dim1=-2, dim2=-1).sqrt()
    return gram / (norm[..., :, None] * norm[..., None, :])


def _pad_to(t: Tensor, width: int) -> Tensor:
    return torch.nn.functional.pad(t, (0, width - t.shape[1]))


def interleave(batch_a: Mapping[str, Tensor], batch_b: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Rows [a0, b0, a1, b1, ...] (ids, mask), padded on the right to a common width."""
    n = batch_a["input_ids"].shape[0]
    if batch_b["input_ids"].shape[0] != n:
        raise ValueError(f"Pair counts differ: batch_a has {n} rows, batch_b {batch_b['input_ids'].shape[0]}; pair i is row i of each")
    width = max(batch_a["input_ids"].shape[1], batch_b["input_ids"].shape[1])
    ids = torch.stack([_pad_to(batch_a["input_ids"], width), _pad_to(batch_b["input_ids"], width)], 1)
    mask = torch.stack([_pad_to(batch_a["attention_mask"], width), _pad_to(batch_b["attention_mask"], width)], 1)
    return ids.flatten(0, 1), mask.flatten(0, 1)


def llmdcos(
    model: nn.Module, batch_a: Mapping[str, Tensor], batch_b: Mapping[str, Tensor], settings: EngineSettings = EngineSettings(),  # noqa: B008 - frozen
) -> Tensor:
    """LLMDcos of pair i = (row i of batch_a, row i of batch_b), per layer: shape (n_pairs, n_layers).

    Both members of a pair share one forward/backward; memory holds one module's scores at a time.
    """
    ids, mask = interleave(batch_a, batch_b)
    layer_of, _, n_layers = layer_map(model)
    gram = LayerGram(layer_of, n_layers)
    gram.begin(ids.shape[0] // 2, 2, ids.device)
    stream_taylor_scores(model, ids, mask, gram.update, settings)
    gram.end()
    return cosine_from_gram(gram.gram)[..., 0, 1]


def pair_rows(x: int, y: int) -> tuple[int, int]:
    """Rows of a `pairs` group holding pair (dataset x, dataset y).

    A group holds two samples per dataset, [X_a, X_b, Y_a, Y_b, ...]: across datasets the pair is
    (X_a, Y_a); within one dataset it is (X_a, X_b), two different samples.
    """
    return (2 * x, 2 * x + 1) if x == y else (2 * x, 2 * y)


def pair_cosines(cos: Tensor, x: int, y: int) -> Tensor:
    """(n_groups, n_layers) LLMDcos of dataset pair (x, y) from group cosines (n_groups, n_layers, R, R)."""
    i, j = pair_rows(x, y)
    return cos[..., i, j]


def deep_layers(n_layers: int) -> list[int]:
    """The paper's deep-layer range for the matrix (its code: 0-indexed L//2 … L−3).

    Models of 3 layers or fewer, where that range is empty, get layer L//2 alone.
    """
    return list(range(n_layers // 2, max(n_layers - 2, n_layers // 2 + 1)))


def layer_span(n_layers: int, span: Sequence[int] | None, default: Sequence[int], reference_depth: int = 32) -> list[int]:
    """0-indexed inclusive [first, last] layers; None scales `default` (given for `reference_depth` layers)."""
    if span is None:  # scaled, and clamped so that shallow test models still get a range
        first, last = (min(n_layers - 1, round(v * n_layers / reference_depth)) for v in default)
    else:
        first, last = span
    if not 0 <= first <= last < n_layers:
        raise ValueError(f"Layer range {[first, last]} is not within 0..{n_layers - 1} (first <= last, inclusive)")
    return list(range(first, last + 1))


def matrix_layers(n_layers: int, span: Sequence[int] | None) -> list[int]:
    """Layers averaged in the matrix: `span` (0-indexed inclusive [first, last]) or the paper's deep layers."""
    return deep_layers(n_layers) if span is None else layer_span(n_layers, span, span)


def similarity_matrix(cos: Tensor, n_datasets: int, layers: Sequence[int]) -> Tensor:
    """(K, K) matrix: mean over pairs of the mean LLMDcos over `layers` (paper Fig. 6)."""
    matrix = torch.empty((n_datasets, n_datasets), dtype=torch.float64)
    for x in range(n_datasets):
        for y in range(n_datasets):
            matrix[x, y] = pair_cosines(cos, x, y)[:, layers].double().mean()
    return matrix
