"""GBLM-Pruner (Das et al., 2023): Wanda's term plus a gradient term from per-sample loss gradients."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lit_activation.engine import EngineSettings, stream_taylor_scores
from lit_activation.engine.reduce import GradientSquares
from lit_activation.models.layers import linear_modules, weight_out_in
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.context import Calibration, PruningContext
from lit_activation.pruning.metrics.base import PruningMetric, state_rows
from lit_activation.pruning.metrics.taylor import calibration_key


class GBLM(PruningMetric):
    """S_jk = |W_jk| · (‖X_k‖₂ / √N + α · ‖G_jk‖₂), with ‖G_jk‖₂ = (Σ_s g_s,jk²)^½ over the N
    calibration sequences, g_s the gradient of sequence s's mean next-token loss on the dense
    model, and ‖X_k‖₂ over every calibration token (GBLM-Pruner's ℓ2 form: its input term is
    Wanda's divided by √N, its gradients scaled by α before squaring).

    Args:
        alpha: α, the weight of the gradient term (GBLM-Pruner's default, 100). Cost: one scoring
            pass of the calibration batch on the dense model with the `loss` target; memory: one
            fp32 value per scored parameter (a sharded rank: of its own rows).
    """

    prunes_experts = False  # its scores come from the dense engine over the linears only

    def __init__(self, alpha: float = 100.0) -> None:
        if not alpha >= 0:
            raise ValueError(f"GBLM alpha must be >= 0, got {alpha}")
        self.alpha = alpha
        self._squares: dict[str, Tensor] = {}
        self._samples = 1
        self._dense: dict[str, dict[str, Tensor]] = {}

    def prepare(self, context: PruningContext) -> None:
        model, ids = context.model, context.calibration_ids
        key = calibration_key(model, ids)
        if key not in self._dense:
            modules = linear_modules(model)
            rows = state_rows(context, modules)  # a sharded rank: its own rows of each Linear
            squares = GradientSquares(modules, rows)
            for start in range(0, ids.shape[0], context.batch_size):
                chunk = ids[start : start + context.batch_size]
                squares.begin("the calibration batch", range(start, start + chunk.shape[0]))
                stream_taylor_scores(model, chunk, torch.ones_like(chunk), squares.update, EngineSettings(target="loss", rows=rows), modules)
                squares.end()
            self._dense = {key: squares.sums}
        self._squares, self._samples = self._dense[key], ids.shape[0]

    def scores(self, name: str, module: nn.Module, weight: Tensor, input_norm: Tensor) -> Tensor:
        gradient = weight_out_in(module, self._squares[name]).sqrt()
        return weight.abs().float() * (input_norm.float()[None, :] / math.sqrt(self._samples) + self.alpha * gradient)

    def memory_needs(self, plan: PlanContext, calibration: Calibration) -> Footprint:
        """One loss-target scoring pass over the calibration batch and the gradient squares it sums."""
        passes = plan.scoring_pass(calibration.batch_size, calibration.seqlen, "loss")
        return Footprint().add("metric scores", "metric state (fp32)", plan.row_state(whole_conv1d=True)).add_all("metric scores", passes)

    def describe(self) -> dict:
        return {"metric": self.label, "alpha": self.alpha}
