"""The paper's own quantity as a pruning metric: the mean Taylor score |W ⊙ ∂D/∂W| over calibration samples."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from lit_activation.engine import EngineSettings, ScoreSum, stream_taylor_scores
from lit_activation.models.layers import block_linears, decoder_layers, linear_modules, weight_out_in
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.context import Calibration, PruningContext
from lit_activation.pruning.metrics.base import PruningMetric, state_rows
from lit_activation.pruning.sequential import calibration_inputs


def calibration_means(model: nn.Module, ids: Tensor, batch_size: int, settings: EngineSettings, modules: Mapping[str, nn.Module]) -> dict[str, Tensor]:
    """Mean Taylor score per parameter of `modules` over the calibration sequences (unpadded rows)."""
    sums = ScoreSum(modules, rows=settings.rows)
    for start in range(0, ids.shape[0], batch_size):
        chunk = ids[start : start + batch_size]
        sums.begin(chunk.shape[0], "the calibration batch", range(start, start + chunk.shape[0]))
        stream_taylor_scores(model, chunk, torch.ones_like(chunk), sums.update, settings, modules)
        sums.end()
    return sums.means()


def calibration_key(model: nn.Module, ids: Tensor) -> str:
    """Identifies (architecture, calibration batch): what dense-model scores depend on in one process."""
    digest = hashlib.sha256(ids.cpu().numpy().tobytes())
    digest.update(model.config.to_json_string().encode())
    return digest.hexdigest()


class Taylor(PruningMetric):
    """S_jk = mean over the calibration samples of A(s, w_jk) = |w_jk · ∂D(s)/∂w_jk| (docs/method.md §1).

    Args:
        target: D(s): `max_logit` (the paper), `log_prob` or `loss`.
        sequential: False (default): one scoring pass over the calibration batch on the dense model
            gives every block's scores before pruning (cost: one forward and backward of the batch;
            memory: one fp32 value per scored parameter). Within one process the scores of the same
            model and batch are computed once (a comparison's runs share them). True: one pass per
            block, when pruning reaches it, on the model as pruned so far, as Wanda's input norms are
            (cost: one pass per block; memory: one block's values).
    """

    prunes_experts = False  # its scores come from the dense engine over the linears only

    def __init__(self, target: Literal["max_logit", "log_prob", "loss"] = "max_logit", sequential: bool = False) -> None:
        self.settings = EngineSettings(target=target)
        self.target, self.sequential = target, sequential
        self._means: dict[str, Tensor] = {}
        self._dense: dict[str, dict[str, Tensor]] = {}

    def prepare(self, context: PruningContext) -> None:
        if self.sequential:
            return
        key = calibration_key(context.model, context.calibration_ids)
        if key not in self._dense:
            self._dense = {key: self._calibration_means(context, linear_modules(context.model))}
        self._means = self._dense[key]

    def enter_block(self, index: int, context: PruningContext) -> None:
        if self.sequential:
            prefix, layers = decoder_layers(context.model)
            block = {f"{prefix}.{index}.{name}": m for name, m in block_linears(layers[index]).items()}
            self._means = self._calibration_means(context, block)

    def _calibration_means(self, context: PruningContext, modules: Mapping[str, nn.Module]) -> dict[str, Tensor]:
        settings = replace(self.settings, rows=state_rows(context, modules))
        return calibration_means(context.model, context.calibration_ids, context.batch_size, settings, modules)

    def scores(self, name: str, module: nn.Module, weight: Tensor, input_norm: Tensor) -> Tensor:
        return weight_out_in(module, self._means[name])

    def memory_needs(self, plan: PlanContext, calibration: Calibration) -> Footprint:
        """Scoring passes over the calibration batch and the mean scores they give: every scored
        parameter's before pruning, or (sequential) one block's while pruning holds its inputs."""
        passes = plan.scoring_pass(calibration.batch_size, calibration.seqlen, self.target)
        if self.sequential:  # when pruning reaches a block, before its own pass: the calibration's inputs to it are held
            phase = "metric scores, block by block"
            held = plan.peak(calibration_inputs, calibration.samples, calibration.seqlen, calibration.batch_size)
            needs = Footprint().add(phase, "calibration inputs held", held).add(phase, "metric state of one block (fp32)", plan.params.block * 4 // plan.shards)
            return needs.add_all(phase, passes)
        return Footprint().add("metric scores", "metric state (fp32)", plan.row_state(whole_conv1d=True)).add_all("metric scores", passes)

    def describe(self) -> dict:
        return {"metric": self.label, "target": self.target, "sequential": self.sequential}
