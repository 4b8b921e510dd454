"""Streaming reductions of per-sample scores: what the callbacks keep instead of score vectors.

Each reducer has `update(module_name, scores)` to be used as (part of) a `ScoreConsumer`: it folds
one module's (batch, *weight.shape) scores into small or parameter-sized state and lets them go.
Pure PyTorch; distributed reduction is the caller's business.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_activation.models import decoder_layers, layer_index, linear_modules


class ScoreSum:
    """Per dataset and parameter, the sum of A over samples, plus the number of samples.

    State: one (n_datasets, *weight.shape) tensor per module; memory = n_datasets × parameters ×
    4 bytes (fp32). `device="cpu"` keeps it off the accelerator for large models.
    """

    def __init__(self, model: nn.Module, n_datasets: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.modules = linear_modules(model)
        self.sums = {
            name: torch.zeros((n_datasets, *m.weight.shape), dtype=dtype, device=device or m.weight.device)
            for name, m in self.modules.items()
        }
        self.samples = torch.zeros(n_datasets, dtype=torch.int64)
        self._rows: Tensor | None = None

    def begin(self, dataset_index: Tensor) -> None:
        """Start a batch whose row r belongs to dataset `dataset_index[r]`."""
        self._rows = dataset_index
        self.samples += torch.bincount(dataset_index.cpu(), minlength=self.samples.numel())

    def update(self, name: str, scores: Tensor) -> None:
        state = self.sums[name]
        state.index_add_(0, self._rows.to(state.device), scores.to(state.device, state.dtype))

    def means(self, dataset: int) -> dict[str, Tensor]:
        """Mean A per parameter over the dataset's samples (SPEC.md §2: mean first, then threshold)."""
        n = int(self.samples[dataset])
        if n == 0:
            raise ValueError(f"dataset index {dataset} received no samples")
        return {name: s[dataset] / n for name, s in self.sums.items()}


class LayerGram:
    """Per group of rows and per layer, the Gram matrix Σ_w A(r1, w)·A(r2, w) of the group's rows.

    Cosine, norm and dot product of any two rows of a group follow from it, over the layer's
    modules concatenated. State per batch: (groups, layers, rows, rows), fp32: a few numbers per
    pair, never a score vector.
    """

    def __init__(self, model: nn.Module) -> None:
        prefix, layers = decoder_layers(model)
        self.n_layers = len(layers)
        self.layer_of = {name: layer_index(name, prefix) for name in linear_modules(model)}
        self.gram: Tensor | None = None

    def begin(self, n_groups: int, group_size: int, device: torch.device | str) -> None:
        """Start a batch of n_groups × group_size rows (group g owns rows g*R … g*R+R-1)."""
        self.gram = torch.zeros((n_groups, self.n_layers, group_size, group_size), device=device)

    def update(self, name: str, scores: Tensor) -> None:
        groups, _, size, _ = self.gram.shape
        flat = scores.reshape(groups, size, -1)
        self.gram[:, self.layer_of[name]] += torch.bmm(flat, flat.transpose(1, 2)).to(self.gram.device)
