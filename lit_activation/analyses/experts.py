"""Finding 1 per expert of a mixture of experts: activated parameters beside routing (docs/moe.md).

Per dataset, MoE layer and expert: the tokens routed there and their mean gate weight (routing), and
the expert's activated parameters, mean A > γ (what the parameters do). Two kinds of zero are kept
apart: an expert no token of the dataset reached is "not routed" (its parameters could not be
activated); one that tokens reached but none of whose parameters passes γ is "routed, not activated".

Whether experts' parameters separate the datasets more than routing does is measured by the report
from these shares (report/findings.py, `separation`). Pure PyTorch and Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from lit_activation.engine.experts import RoutingRecord
from lit_activation.models.experts import expert_of

NOT_ROUTED, NOT_ACTIVATED, ACTIVATED = "not routed", "routed, not activated", "activated"


class RoutingCounts:
    """One dataset's routing, per MoE layer and expert: real tokens routed there and the sum of their
    gate weights. State: two (MoE layers, experts) tables, whatever the number of datasets (`reset`
    between them)."""

    def __init__(self, layers: Sequence[int], num_experts: int) -> None:
        self.layers = list(layers)
        self.row = {layer: i for i, layer in enumerate(self.layers)}
        self.tokens = torch.zeros((len(self.layers), num_experts), dtype=torch.int64)
        self.gate = torch.zeros((len(self.layers), num_experts), dtype=torch.float64)

    def update(self, record: RoutingRecord) -> None:
        """Add one MoE block's routing of one batch (its real tokens only)."""
        row = self.row[record.layer]
        experts = self.tokens.shape[1]
        ids = record.expert_ids.reshape(-1).long()
        keep = ids < experts  # an expert-parallel sentinel is no expert
        ids, weights = ids[keep].cpu(), record.weights.reshape(-1)[keep].detach().double().cpu()
        self.tokens[row] += torch.bincount(ids, minlength=experts)
        self.gate[row] += torch.zeros(experts, dtype=torch.float64).index_add_(0, ids, weights)

    def reset(self) -> None:
        self.tokens.zero_()
        self.gate.zero_()


def expert_mass(
    means: Mapping[str, Tensor], layer_of: Mapping[str, int], kind_of: Mapping[str, str], layers: Sequence[int], experts: int,
) -> Tensor:
    """(MoE layers, experts) fp64: each expert's Taylor mass, Σ of the mean A over its parameters (every
    fused tensor's slice), from one dataset's means (a sharded rank: its own rows; sum over the group)."""
    row = {layer: i for i, layer in enumerate(layers)}
    mass = torch.zeros((len(layers), experts), dtype=torch.float64)
    for name, mean in means.items():
        found = expert_of(kind_of[name])
        if found is not None:
            mass[row[layer_of[name]], found[0]] += float(mean.sum(dtype=torch.float64))
    return mass


def _shares(values: Sequence[float]) -> list[float | None]:
    total = sum(values)
    return [v / total for v in values] if total > 0 else [None] * len(values)


def expert_summary(
    module_counts: Mapping[str, Sequence[int]], tokens: Tensor, gate: Tensor, layers: Sequence[int], expert_params: Mapping[str, int],
    mass: Tensor | None = None,
) -> dict:
    """One dataset's per-expert table, JSON-ready: per MoE layer (by index), per expert, its routed tokens,
    token share, mean gate weight, activated parameters per expert module and in all, activated share,
    activated parameters per routed token, and state (activated / routed, not activated / not routed).

    module_counts: the dataset's activated parameters per scored kind and layer (expert kinds such as
    'mlp.experts.5.down_proj' among them); tokens, gate: (MoE layers, experts) routing sums;
    expert_params: parameters of one expert per expert module kind ('mlp.experts.down_proj' -> count);
    mass: (MoE layers, experts) Taylor mass (`expert_mass`), reported as `taylor_mass` when given.
    """
    experts = tokens.shape[1]
    per_module: dict[str, list[list[int]]] = {}
    for kind, counts in module_counts.items():
        found = expert_of(kind)
        if found is not None:
            expert, module = found
            per_module.setdefault(module, [[0] * experts for _ in counts])
            for layer, count in enumerate(counts):
                per_module[module][layer][expert] += int(count)
    table = {}
    for row, layer in enumerate(layers):
        routed = [int(t) for t in tokens[row].tolist()]
        activated = {module: per_layer[layer] for module, per_layer in per_module.items()}
        total = [sum(values[e] for values in activated.values()) for e in range(experts)]
        table[str(layer)] = {
            "routed_tokens": routed,
            "token_share": _shares(routed),
            "mean_gate_weight": [float(g) / t if t else None for g, t in zip(gate[row].tolist(), routed, strict=True)],
            "activated": activated,
            "activated_total": total,
            "activated_share": _shares(total),
            "activated_per_routed_token": [a / t if t else None for a, t in zip(total, routed, strict=True)],
            "state": [NOT_ROUTED if t == 0 else NOT_ACTIVATED if a == 0 else ACTIVATED for a, t in zip(total, routed, strict=True)],
        }
        if mass is not None:
            table[str(layer)]["taylor_mass"] = mass[row].tolist()
    return {"num_experts": experts, "layers": list(layers), "parameters_per_expert": dict(expert_params), "per_layer": table}
