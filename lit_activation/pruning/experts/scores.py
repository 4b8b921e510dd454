"""What an expert is worth: one score per (MoE layer, expert), the lowest removed first (docs/moe.md, "Removing experts").

A score is an option chosen by `class_path`:
- `TaylorMass`: Σ over the expert's parameters of their mean Taylor score A (Finding 1's counts run,
  counts.json), from one dataset (domain-specific) or the mean over all the file's datasets;
- `REAP`: the mean over the calibration tokens routed to the expert of g_j(x)·‖f_j(x)‖₂ (REAP's
  router-weighted expert activation);
- `Frequency`: the share of the calibration tokens routed to the expert.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from lit_activation.pruning.allocations.counts import CountsFile
from lit_activation.pruning.experts.layout import MoEShape
from lit_activation.pruning.experts.routing import RoutedStatistics


class ExpertScore(ABC):
    """One score per (MoE layer, expert); the experts with the lowest are removed."""

    label: ClassVar[str]  # its name in records (a class attribute: a jsonargparse lazy default is a subclass of another name)
    calibrated: ClassVar[bool] = False  # computed on the calibration batch (routed_statistics), not read from a file

    def check(self, model_name: str, n_layers: int, shape: MoEShape) -> None:
        """Fail before any work if the score cannot be had for this model."""

    @abstractmethod
    def scores(self, shape: MoEShape, routed: RoutedStatistics | None) -> Tensor:
        """(MoE layers in `shape.layers` order, experts) float64."""

    def describe(self) -> dict:
        """JSON-ready record of the score and its options."""
        return {"score": self.label, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


class REAP(ExpertScore):
    """S_j = mean over the calibration tokens routed to expert j of g_j(x)·‖f_j(x)‖₂ (REAP, Cerebras 2025, arXiv 2510.13999).

    g_j(x) is the gate weight the model multiplies the expert's output by (Mixtral and OLMoE with
    norm_topk_prob: the top-k renormalised softmax; Qwen-MoE without it: the softmax probability;
    gpt-oss: the softmax over the top-k logits; DeepSeek-V3: the scaled sigmoid). An expert no
    calibration token reached scores 0.
    """

    label, calibrated = "reap", True

    def scores(self, shape: MoEShape, routed: RoutedStatistics | None) -> Tensor:
        assert routed is not None  # calibrated: the caller ran the pass
        return routed.weighted_norms / routed.tokens.clamp_min(1)


class Frequency(ExpertScore):
    """The share of the calibration tokens routed to the expert: tokens whose top-k holds it over all
    tokens (over a layer's experts the shares sum to top-k)."""

    label, calibrated = "frequency", True

    def scores(self, shape: MoEShape, routed: RoutedStatistics | None) -> Tensor:
        assert routed is not None
        return routed.tokens.double() / routed.tokens_seen.double().clamp_min(1)[:, None]


class TaylorMass(ExpertScore):
    """Σ over an expert's parameters of their mean Taylor score A, from a counts run's counts.json
    (`experts.per_layer[layer].taylor_mass`).

    Args:
        path: the counts.json (a `lit-activation predict` run with ActivationCounts on this model).
        dataset: the dataset whose patterns choose the experts (domain-specific); None: the mean over
            all the file's datasets, each weighing the same whatever its number of samples.
        model: the model the counts must come from (None: this run's model), as CountsFile's.
    """

    label = "taylormass"

    def __init__(self, path: str, dataset: str | None = None, model: str | None = None) -> None:
        self.path, self.dataset, self.model = path, dataset, model

    def _datasets(self) -> list[str]:
        if self.dataset is not None:
            return [self.dataset]
        data, _ = CountsFile(self.path).entry()  # the file's errors, said as the allocation's counts say them
        return list(data["datasets"])

    def _tables(self, model_name: str, n_layers: int) -> dict[str, dict]:
        """Each dataset's per-expert table, the file checked as the allocation's CountsFile checks it."""
        tables = {}
        for name in self._datasets():
            counts = CountsFile(self.path, name, model=self.model)
            counts.check(model_name, n_layers)
            _, entry = counts.entry()
            tables[name] = entry.get("experts")
        return tables

    def check(self, model_name: str, n_layers: int, shape: MoEShape) -> None:
        for name, table in self._tables(model_name, n_layers).items():
            self._mass(name, table, shape)

    def _mass(self, name: str, table: dict | None, shape: MoEShape) -> Tensor:
        where = f"counts file {self.path!r}, dataset {name!r}"
        per_layer = (table or {}).get("per_layer", {})
        missing = [layer for layer in shape.layers if "taylor_mass" not in per_layer.get(str(layer), {})]
        if missing:
            raise ValueError(
                f"{where} has no per-expert Taylor mass for MoE layer(s) {missing}; write it with a counts run (ActivationCounts) of this "
                "mixture of experts, whose counts.json holds experts.per_layer.<layer>.taylor_mass"
            )
        rows = []
        for layer in shape.layers:
            values = per_layer[str(layer)]["taylor_mass"]
            if len(values) != shape.experts:
                raise ValueError(f"{where}: layer {layer} has the Taylor mass of {len(values)} experts; the model has {shape.experts}")
            bad = next((e for e, v in enumerate(values) if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0), None)
            if bad is not None:
                raise ValueError(f"{where}: layer {layer}, expert {bad}'s Taylor mass is {values[bad]!r}; a Taylor mass is a finite number >= 0")
            rows.append([float(v) for v in values])
        return torch.tensor(rows, dtype=torch.float64)

    def scores(self, shape: MoEShape, routed: RoutedStatistics | None) -> Tensor:
        # the names and the model were checked before the weights loaded; the file is read again as it is now
        masses = [self._mass(name, CountsFile(self.path, name).entry()[1].get("experts"), shape) for name in self._datasets()]
        return torch.stack(masses).mean(0)
