"""Which parameters are scored: the linear weights inside the decoder blocks, found generically.

The scored parameters (docs/method.md §1) are nn.Linear and GPT-2's transformers Conv1D (weight
stored transposed, (in, out)) inside the decoder blocks, and in a mixture of experts each expert's
slice of the fused expert tensors and the router's weight (models/experts.py). Embeddings, lm_head,
norms and biases are never scored. Modules are grouped by the layer index in their name, never by
position.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.pytorch_utils import Conv1D

from lit_activation.models.experts import expert_biases, expert_slices, fused_parameters, routers, unscored_weights


def text_config(config: PretrainedConfig) -> PretrainedConfig:
    """The decoder's config (multimodal configs nest it)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def num_layers_of(config: PretrainedConfig) -> int:
    """The number of decoder layers a config describes (its text config's, for multimodal ones)."""
    return int(text_config(config).num_hidden_layers)


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(qualified name, module list) of the model's decoder blocks, found generically.

    The list is the ModuleList whose length equals the configured number of layers and whose blocks
    hold linear modules: `model.layers` (Llama, Mistral, Qwen2, Gemma3), `transformer.h` (GPT-2),
    `model.decoder.layers` (OPT).
    """
    n = num_layers_of(model.config) if hasattr(model, "config") else -1
    for name, module in model.named_modules():
        is_list = isinstance(module, nn.ModuleList) and len(module) == n and n > 0
        if is_list and any(isinstance(m, (nn.Linear, Conv1D)) for m in module[0].modules()):
            return name, module
    raise TypeError(
        f"Cannot find the decoder layers of {type(model).__name__}: expected a ModuleList of "
        f"num_hidden_layers={n} blocks holding nn.Linear or Conv1D modules. Supported: Llama, Mistral, "
        "Qwen2, Gemma3, GPT-2, OPT and models laid out like them."
    )


def block_linears(block: nn.Module) -> dict[str, nn.Module]:
    """The scored modules of one decoder block (nn.Linear / Conv1D), by their name inside the block."""
    return {name: m for name, m in block.named_modules() if isinstance(m, (nn.Linear, Conv1D))}


def linear_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The linears, name -> module, ordered by layer index: every nn.Linear / Conv1D in a decoder block
    (what pruning works on; `scored_modules` adds a mixture of experts' routers and expert slices)."""
    prefix, layers = decoder_layers(model)
    found = {f"{prefix}.{index}.{sub}": m for index, block in enumerate(layers) for sub, m in block_linears(block).items()}
    if not found:
        raise TypeError(f"{type(model).__name__} has decoder layers but no linear modules in them")
    return found


def block_scored(block: nn.Module, model_name: str = "the model") -> dict:
    """The scored units of one decoder block by their name inside it: its linears, its routers and
    each expert's slice of its fused expert tensors. A matrix-shaped weight none of them covers is
    refused (ValueError), so that nothing is scored silently without it."""
    units = {**block_linears(block), **routers(block), **expert_slices(block)}
    covered = [m.weight for m in block_linears(block).values()] + [m.weight for m in routers(block).values()]
    covered += fused_parameters(block) + expert_biases(block)
    missing = unscored_weights(block, iter(covered))
    if missing:
        raise ValueError(
            f"{model_name} cannot be scored: its {type(block).__name__} holds {', '.join(missing[:4])}, which is no linear, router or "
            "expert tensor the engine knows; accepted: nn.Linear / Conv1D, fused experts that transformers marks with "
            "use_experts_implementation, routers with an (experts, hidden) weight"
        )
    return units


def block_prunable(block: nn.Module, with_routers: bool = False) -> dict:
    """The units pruning visits in one block, by their name inside it: its linears (shared experts
    included) and each expert's slice of its fused expert tensors; its routers too when `with_routers`
    (else they stay dense). A dense block: its linears, as `block_linears`."""
    units = {**block_linears(block), **expert_slices(block)}
    return {**units, **routers(block)} if with_routers else units


def scored_modules(model: nn.Module) -> dict:
    """Scored units, name -> module (or ExpertSlice), ordered by layer index: `linear_modules`, and in a
    mixture of experts each router and each expert's slice of the fused tensors (models/experts.py)."""
    prefix, layers = decoder_layers(model)
    name = type(model).__name__
    return {f"{prefix}.{index}.{sub}": m for index, block in enumerate(layers) for sub, m in block_scored(block, name).items()}


def stored_transposed(module: object) -> bool:
    """Whether a scored unit stores its weight as (in, out): GPT-2's Conv1D, gpt-oss's expert slices."""
    return isinstance(module, Conv1D) or bool(getattr(module, "transposed", False))


def weight_shape(module: object) -> torch.Size:
    """A scored unit's weight shape as stored (the whole shape on a sharded rank too)."""
    shape = getattr(module, "shape", None)
    return shape if isinstance(shape, torch.Size) else module.weight.shape


_LAYER_RE = re.compile(r"\.(\d+)\.")


def layer_index(module_name: str, prefix: str) -> int:
    """0-based decoder layer index parsed from a module name such as 'model.layers.3.mlp.up_proj'."""
    match = _LAYER_RE.match(module_name[len(prefix) :] + ".")
    if not module_name.startswith(prefix) or match is None:
        raise ValueError(f"Module {module_name!r} is not under the decoder layers {prefix!r}")
    return int(match.group(1))


def module_kind(module_name: str, prefix: str) -> str:
    """The module's name inside its block, e.g. 'self_attn.q_proj' (the per-module grouping key)."""
    rest = module_name[len(prefix) + 1 :]
    return rest.split(".", 1)[1]


def weight_out_in(module: nn.Module, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The weight (or a same-shaped tensor) viewed as (out, in); Conv1D stores it as (in, out)."""
    weight = module.weight if weight is None else weight
    return weight.t() if stored_transposed(module) else weight


def layer_map(model: nn.Module) -> tuple[dict[str, int], dict[str, str], int]:
    """(scored unit -> layer index, scored unit -> kind such as 'mlp.up_proj' or 'mlp.experts.5.down_proj', number of layers)."""
    prefix, layers = decoder_layers(model)
    names = scored_modules(model)
    return {n: layer_index(n, prefix) for n in names}, {n: module_kind(n, prefix) for n in names}, len(layers)
