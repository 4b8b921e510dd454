"""Load a model straight into its FSDP2 shards: each rank reads only its own rows of the checkpoint.

The model is built on the meta device, sharded, materialised, and each rank copies its rows of each
tensor from the safetensors files, one file open per tensor, so a rank's host memory peaks at its
shard plus one slice (docs/design.md, "Loading shards"). Sources without safetensors files go
through rank 0, which alone holds the whole model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import init_empty_weights
from safetensors import safe_open
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from lit_activation.distributed.sharding import shard_model
from lit_activation.models.loading import TINY_PREFIX, load_causal_lm, local_source, resolve_dtype

log = logging.getLogger(__name__)


def checkpoint_files(directory: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file of a Hugging Face model directory ({} when it has none)."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return {name: directory / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    single = directory / "model.safetensors"
    if not single.is_file():
        return {}
    with safe_open(single, framework="pt") as f:
        return dict.fromkeys(f.keys(), single)


def checkpoint_key(name: str, files: Mapping[str, Path], prefix: str) -> str | None:
    """The checkpoint's name for parameter `name`: as it is, or without the base model's prefix
    (GPT-2's hub files say `h.0…` for `transformer.h.0…`); None when neither is there."""
    if name in files:
        return name
    short = name.removeprefix(f"{prefix}.") if prefix else name
    return short if short in files else None


def read_slice(path: Path, key: str, index: tuple[slice, ...]) -> Tensor:
    """One slice of one tensor of a safetensors file; the file is closed again (see the module doc)."""
    with safe_open(path, framework="pt") as f:
        return f.get_slice(key)[index]


def own_slice(param: Tensor) -> tuple[slice, ...]:
    """The index of this rank's part of a (DTensor) parameter in the full tensor."""
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if not isinstance(param, DTensor):
        return tuple(slice(0, n) for n in param.shape)
    shape, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
    return tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))


def _local(param: Tensor) -> Tensor:
    return param.to_local() if hasattr(param, "to_local") else param


def meta_model(config: PretrainedConfig, dtype: torch.dtype, trust_remote_code: bool = False) -> PreTrainedModel:
    """The architecture with parameters on the meta device and buffers computed for real (on the host)."""
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    # A head tied to the embeddings is one parameter, sharded once (FSDP2 keeps a tie made before
    # it shards): the checkpoint names it once, as the embeddings, and each rank reads its own rows.
    model.tie_weights()
    return model.eval().requires_grad_(False)


def materialize(model: nn.Module, device: torch.device) -> None:
    """Allocate the (sharded) parameters on `device`, uninitialised, keeping the buffers' values."""
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    model.to_empty(device=device)
    with torch.no_grad():
        for name, value in buffers.items():
            model.get_buffer(name).copy_(value)


def expert_sources(model: nn.Module, name: str, files: Mapping[str, Path]) -> list[list[str]] | None:
    """For a fused experts tensor the checkpoint stores expert by expert (Mixtral's w1/w3/w2, Qwen's
    per-expert gate/up/down): per expert, the keys whose rows it concatenates, in order (gate, then
    up). Read from transformers' own conversion mapping of the model type, where it merges the
    experts (and concatenates their rows) and does nothing else; None otherwise."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    mapping = get_checkpoint_conversion_mapping(getattr(model.config, "model_type", "")) or []
    experts = None
    for converter in (t for t in mapping if type(t).__name__ == "WeightConverter"):
        operations = [type(op).__name__ for op in converter.operations]
        merged_rows = operations == ["MergeModulelist"] or (operations == ["MergeModulelist", "Concatenate"] and converter.operations[1].dim == 1)
        target = converter.target_patterns[0]
        if not merged_rows or operations[0] != "MergeModulelist" or converter.operations[0].dim != 0 or not name.endswith(target):
            continue
        experts = getattr(model.get_parameter(name), "shape", (0,))[0]
        prefix = name[: len(name) - len(target)]
        sources = []
        for e in range(experts):
            keys = []
            for pattern in converter.source_patterns:
                key = stored_key(model, prefix + pattern.replace("*", str(e)), files)
                if key is None:
                    return None
                keys.append(key)
            sources.append(keys)
        return sources
    return None


def renamings(model: nn.Module) -> list[tuple[str, str]]:
    """(as stored, as loaded) of the plain renamings transformers applies to this model type's checkpoints
    on loading (Mixtral's `.block_sparse_moe.` -> `.mlp.`); regular expressions are left out."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    mapping = get_checkpoint_conversion_mapping(getattr(model.config, "model_type", "")) or []
    literal = lambda pattern: pattern.replace("\\.", ".")  # noqa: E731 - an escaped dot is a dot
    plain = lambda pattern: not set(literal(pattern)) & set("^$*+?{}[]|()\\")  # noqa: E731 - no other regular expression
    return [
        (literal(t.source_patterns[0]), literal(t.target_patterns[0]))
        for t in mapping if type(t).__name__ == "WeightRenaming" and plain(t.source_patterns[0]) and plain(t.target_patterns[0])
    ]


def stored_key(model: nn.Module, name: str, files: Mapping[str, Path]) -> str | None:
    """The checkpoint's name for `name`: as it is, or with a renaming of `renamings` undone (and the
    base model's prefix dropped, `checkpoint_key`); None when the files name neither."""
    base = getattr(model, "base_model_prefix", "")
    for candidate in [name] + [name.replace(new, old) for old, new in renamings(model) if new in name]:
        found = checkpoint_key(candidate, files, base)
        if found is not None:
            return found
    return None


def read_expert_rows(files: Mapping[str, Path], sources: list[list[str]], index: tuple[slice, ...]) -> Tensor:
    """This rank's part (experts, rows, cols) of a fused experts tensor from its per-expert tensors: of
    each expert, the rows of `index` from the concatenation of its sources, each read for the rows it covers."""
    experts, rows, cols = index
    parts = []
    for keys in sources[experts]:
        pieces, first = [], 0
        for key in keys:
            with safe_open(files[key], framework="pt") as f:
                stored = f.get_slice(key)
                n = stored.get_shape()[0]
                start, stop = max(rows.start, first), min(rows.stop, first + n)
                if start < stop:
                    pieces.append(stored[start - first : stop - first, cols])
            first += n
        parts.append(torch.cat(pieces) if pieces else torch.empty(0))
    return torch.stack(parts)


def missing_keys(model: nn.Module, files: Mapping[str, Path]) -> list[str]:
    """Parameters the checkpoint files do not name, even expert by expert (a tied copy is no parameter of its own)."""
    return [name for name, _ in model.named_parameters() if stored_key(model, name, files) is None and expert_sources(model, name, files) is None]


@torch.no_grad()
def load_own_rows(model: nn.Module, files: Mapping[str, Path]) -> None:
    """Copy each parameter's own rows (its shard) from the safetensors files, one tensor at a time
    (a fused experts tensor stored expert by expert: one expert's tensors at a time)."""
    for name, param in model.named_parameters():
        key = stored_key(model, name, files)
        if key is None:
            _local(param).copy_(read_expert_rows(files, expert_sources(model, name, files), own_slice(param)))
            continue
        _local(param).copy_(read_slice(files[key], key, own_slice(param)))
    persistent = dict(model.named_buffers())
    for name in model.state_dict():
        key = stored_key(model, name, files) if name in persistent else None
        if key is not None:
            persistent[name].copy_(read_slice(files[key], key, own_slice(persistent[name])))


def broadcast_from_rank0(model: nn.Module, name_or_path: str, dtype: str, trust_remote_code: bool) -> None:
    """Rank 0 loads the full model and sends each rank its shards, one tensor at a time."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    full: dict[str, Tensor] = {}
    if dist.get_rank() == 0:
        full = load_causal_lm(name_or_path, dtype, trust_remote_code)[0].state_dict()
    # strict=False: a tied head has no entry of its own in a state dict that names it once
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False))


def load_sharded(
    name_or_path: str, config: PretrainedConfig, dtype: str, mesh, compute_dtype: torch.dtype, device: torch.device,  # noqa: ANN001 - a DeviceMesh
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """The model sharded over `mesh` (sharding.shard_model), each rank having read only its own rows.

    A collective: every rank of the world calls it.
    """
    model = meta_model(config, resolve_dtype(dtype), trust_remote_code)
    shard_model(model, mesh, compute_dtype)
    materialize(model, device)
    files: dict[str, Path] = {}
    if not name_or_path.startswith(TINY_PREFIX):
        # rank 0 first: a source made on first use (the embedded default, a .gguf) is made once
        if dist.get_rank() == 0:
            directory = local_source(name_or_path)
        dist.barrier()
        directory = local_source(name_or_path) if dist.get_rank() else directory
        files = checkpoint_files(Path(directory))
    missing = missing_keys(model, files) if files else ["(no safetensors files)"]
    if missing:
        log.info("Loading %s through rank 0 (its files do not name %s)", name_or_path, missing[:3])
        broadcast_from_rank0(model, name_or_path, dtype, trust_remote_code)
    else:
        load_own_rows(model, files)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"{name_or_path}: {left[:4]} still on the meta device after loading")
    return model
