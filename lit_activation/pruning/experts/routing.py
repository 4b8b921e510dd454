"""What the calibration batch routes to each expert: the tokens, and the gate-weighted norms of the expert's outputs.

One pass over the calibration batch, block by block as sequential pruning runs (`sequential_blocks`: one
block's calibration activations held at a time), on the model as it is: every score describes the
original experts, none depends on the order in which layers are cut. In each MoE block a forward hook on
the experts module reads what the router handed it (the tokens, their top-k experts and gate weights) and
applies each expert to the tokens routed to it, to take the norm of its output f_j(x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lit_activation.models.experts import ExpertsLayout, expert_output, experts_modules
from lit_activation.models.layers import decoder_layers
from lit_activation.pruning.sequential import sequential_blocks


@dataclass
class RoutedStatistics:
    """Per MoE layer (rows, in `layers` order) and expert: the calibration tokens routed there, and the sum
    over them of g_j(x)·‖f_j(x)‖₂ (fp64). `tokens_seen`: the calibration tokens each MoE layer routed."""

    layers: list[int]
    tokens: Tensor  # (MoE layers, experts) int64
    weighted_norms: Tensor  # (MoE layers, experts) float64
    tokens_seen: Tensor  # (MoE layers,) int64


def _accumulate(stats: RoutedStatistics, row: int, module: nn.Module, layout: ExpertsLayout, hidden: Tensor, index: Tensor, weights: Tensor) -> None:
    """Add one batch of one MoE block: each expert applied to the tokens routed to it (ids past E, an
    expert-parallel sentinel, are no expert)."""
    experts = stats.tokens.shape[1]
    stats.tokens_seen[row] += index.shape[0]
    for expert in range(experts):
        token, slot = (index == expert).nonzero(as_tuple=True)
        if token.numel() == 0:
            continue
        norms = expert_output(module, layout, expert, hidden[token]).double().norm(dim=-1)
        stats.tokens[row, expert] += token.numel()
        stats.weighted_norms[row, expert] += float((weights[token, slot].double() * norms).sum())


@torch.no_grad()
def routed_statistics(model: nn.Module, calibration_ids: Tensor, batch_size: int, layers: list[int], experts: int) -> RoutedStatistics:
    """Routed tokens and Σ g·‖f‖ per (MoE layer, expert) over the calibration batch (samples, seqlen)."""
    stats = RoutedStatistics(
        list(layers), torch.zeros((len(layers), experts), dtype=torch.int64), torch.zeros((len(layers), experts), dtype=torch.float64),
        torch.zeros(len(layers), dtype=torch.int64),
    )
    _, blocks = decoder_layers(model)
    handles = []
    for row, layer in enumerate(layers):
        for module, layout in experts_modules(blocks[layer]).values():

            def hook(module: nn.Module, args: tuple, kwargs: dict, output: Tensor, row: int = row, layout: ExpertsLayout = layout) -> None:
                # every family calls its experts with (hidden_states, top-k indices, top-k gate weights), by position or name
                hidden, index, weights = [*args, *kwargs.values()][:3]
                _accumulate(stats, row, module, layout, hidden, index, weights)

            handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        # nothing is collected before a block runs: the hooks read each block as sequential_blocks runs it once
        sequential_blocks(model, calibration_ids, lambda index, block, statistics: None, batch_size, lambda block, inputs: {})
    finally:
        for handle in handles:
            handle.remove()
    return stats
