"""Wanda's metric (Sun et al., 2024): |W_jk| · ‖X_k‖₂, the weight times its input's norm."""

from __future__ import annotations

from torch import Tensor, nn

from lit_activation.pruning.metrics.base import PruningMetric


class Wanda(PruningMetric):
    """S_jk = |W_jk| · ‖X_k‖₂ over every calibration token: the paper's (and Wanda's) metric."""

    def scores(self, name: str, module: nn.Module, weight: Tensor, input_norm: Tensor) -> Tensor:
        return weight.abs().float() * input_norm.float()[None, :]
