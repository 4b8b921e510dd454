"""A model's own files checked before they load: a local directory's config, tokenizer and weight files, and
GGUF files. A copy cut short, a file overwritten with something else or a shard that is missing is refused in
one line naming the file (lit_activation.files.BrokenFile), before any weight is read.

Only what can be read cheaply is checked: JSON files whole, safetensors headers against the file's size,
a pickle archive's directory, a GGUF file's header and tensor table. Whether the values make a model is
transformers' to say when it loads them.
"""

from __future__ import annotations

import functools
import struct
import zipfile
from pathlib import Path

from lit_activation.files import BrokenFile, check_safetensors, read_json_object

# Weight files a Hugging Face directory may hold, most preferred first: (an index of shards, a single file).
WEIGHTS = (("model.safetensors.index.json", "model.safetensors"), ("pytorch_model.bin.index.json", "pytorch_model.bin"))
# Tokenizer files that are JSON (the others, e.g. a SentencePiece model, are binary and left to their loader).
TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json")


def copy_again(directory: Path) -> str:
    """What to do about a broken file of a model directory."""
    return f"copy or download the model directory {directory} again"


def check_model_dir(directory: str | Path, remedy: str | None = None, weights: bool = True) -> None:
    """Refuse a local model directory whose config, tokenizer or (with `weights`) weight files cannot be
    read: each file named with what is wrong (cut short, not JSON, a missing shard, no weights at all)."""
    directory = Path(directory)
    remedy = remedy or copy_again(directory)
    check_config(directory, remedy)
    for name in TOKENIZER_JSON:
        if (directory / name).is_file():
            read_json_object(directory / name, remedy)
    if weights:
        check_weights(directory, remedy)


def check_config(directory: Path, remedy: str | None = None) -> None:
    """A model directory's config.json is a JSON object that names its model type."""
    config = read_json_object(directory / "config.json", remedy or copy_again(directory))
    if not isinstance(config.get("model_type"), str):
        raise BrokenFile(directory / "config.json", "has no 'model_type': it is not a transformers model's config", remedy or copy_again(directory))


def check_weights(directory: Path, remedy: str) -> None:
    """A model directory's weights: one file, or shards with their index, each readable."""
    for index, single in WEIGHTS:
        if (directory / index).is_file():
            for shard in _shards(directory / index, remedy):
                _check_weights(directory / shard, remedy)
            return
        if (directory / single).is_file():
            _check_weights(directory / single, remedy)
            return
    raise BrokenFile(directory, "holds no weights (model.safetensors, its shards with their index, or pytorch_model.bin)", remedy)


def _shards(index: Path, remedy: str) -> list[str]:
    """The weight files a shard index lists; a listed file that is missing is refused."""
    weight_map = read_json_object(index, remedy).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(f, str) for f in weight_map.values()):
        raise BrokenFile(index, "has no 'weight_map' of tensor names to files", remedy)
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (index.parent / s).is_file()]
    if missing:
        raise BrokenFile(index, f"lists weight files that are missing: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}", remedy)
    return shards


def _check_weights(path: Path, remedy: str) -> None:
    if path.suffix == ".safetensors":
        check_safetensors(path, remedy)
        return
    try:  # torch.save writes a zip archive, whose directory sits at its end: a cut copy has none
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise BrokenFile(path, "is cut short or is not a PyTorch weights file (no archive directory at its end)", remedy) from None


GGUF_MAGIC = b"GGUF"


def check_gguf(path: str | Path, remedy: str = "copy the .gguf file again (or download it again)") -> None:
    """Refuse a GGUF file that cannot be read whole: empty, not GGUF, or cut short (the tensors its header
    lists do not fit in the file). Parses the header and tensor table, as the loader would (seconds)."""
    path = Path(path)
    stat = path.stat()
    _check_gguf(str(path), stat.st_mtime_ns, stat.st_size, remedy)


@functools.cache
def _check_gguf(file: str, mtime_ns: int, size: int, remedy: str) -> None:
    """Check one version of a GGUF file once per process (the command's check, the tokenizer's and the model's loads all ask)."""
    from gguf import GGUFReader  # only when a GGUF file is checked: it is slow to import

    path = Path(file)
    if size == 0:
        raise BrokenFile(path, "is empty", remedy)
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise BrokenFile(path, "is not a GGUF file (it does not start with 'GGUF')", remedy)
    try:
        GGUFReader(path)
    # gguf's reader maps the file and slices it by the header's numbers: a cut or damaged file fails with
    # numpy's and struct's errors (a slice that does not fit, a count that runs past the end)
    except (ValueError, IndexError, KeyError, OverflowError, struct.error):
        raise BrokenFile(path, f"is cut short or damaged: its {size} bytes do not hold the tensors its header lists", remedy) from None
