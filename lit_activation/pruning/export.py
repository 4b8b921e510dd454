"""Save a (pruned) model in Hugging Face format: safetensors + tokenizer + pruning.json, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_activation import outputs
from lit_activation.distributed.sharding import is_sharded


def _unsharded(model: Any, state: dict[str, Any]) -> Any:
    """A plain copy of the model's architecture around the gathered weights themselves: built on the
    meta device and given the tensors (assign=True), so rank 0 never holds a second, random copy."""
    from lit_activation.distributed.sharded_loading import meta_model

    plain = meta_model(model.config, next(iter(state.values())).dtype)
    plain.load_state_dict(state, strict=False, assign=True)  # a tied head is named once in `state`
    plain.tie_weights()
    missing = [name for name, p in plain.named_parameters() if p.is_meta]
    if missing:
        raise RuntimeError(f"the gathered state lacks {missing[:4]}: the sharded model cannot be saved whole")
    return plain


def full_state_dict(model: Any) -> dict[str, Any] | None:
    """The whole model's weights on the host; a sharded (FSDP2) model's shards are gathered first.

    A collective when sharded: call it on every rank (rank 0 gets the tensors). None when the model
    is not sharded: it is saved as it is.
    """
    if not any(is_sharded(p) for p in model.parameters()):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_pruned(model: Any, tokenizer: Any, path: str | Path, record: dict, state: dict[str, Any] | None = None) -> Path:
    """Write the model directory beside `path` and rename it into place; never overwrites.

    `state`: the gathered weights of a sharded model (full_state_dict), saved through an unsharded
    copy of its architecture. Unstructured zeros are stored as ordinary values: the files are as
    large as the dense model's.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; a saved model is never overwritten. Choose another save_dir.")
    with outputs.staged_dir(path) as tmp:
        if state is not None:
            _unsharded(model, state).save_pretrained(tmp, safe_serialization=True)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        outputs.write_json(tmp / "pruning.json", record)
    return path
