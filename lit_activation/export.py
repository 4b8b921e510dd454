"""Save a (pruned) model in Hugging Face format: safetensors + tokenizer + pruning.json, atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lit_activation import io


def save_pruned(model: Any, tokenizer: Any, path: str | Path, record: dict) -> Path:
    """Write the model directory beside `path` and rename it into place; never overwrites.

    Unstructured zeros are stored as ordinary values: the files are as large as the dense model's.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; a saved model is never overwritten. Choose another save_dir.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        io.write_json(tmp / "pruning.json", record)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
