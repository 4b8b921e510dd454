"""Magnitude pruning: |W|, the baseline Wanda improves on (no calibration data used)."""

from __future__ import annotations

from torch import Tensor, nn

from lit_activation.pruning.metrics.base import PruningMetric


class Magnitude(PruningMetric):
    """S_jk = |W_jk|."""

    def scores(self, name: str, module: nn.Module, weight: Tensor, input_norm: Tensor) -> Tensor:
        return weight.abs().float()
