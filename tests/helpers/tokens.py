"""The tests' memo of tokenized running text: a corpus is tokenized once per test process, not once per run.

Every run on a corpus tokenizes all of it (`samples.token_stream`: windows, calibration, perplexity),
and the tests run many on the same embedded ones with the same tokenizer: the 3 M characters of the
embedded Wikipedia stand-in take seconds each time with the tiny character tokenizer, for a run that
reads its first 1024 tokens. `install()` wraps `token_stream` so that the same text under the same
tokenizer (its class and its whole serialized pipeline: normalizer, pre-tokenizer, model, special
tokens) is tokenized once; each caller gets its own copy. The ids are the function's own, so no test
sees other inputs. A tokenizer without a serialized pipeline (a slow one) is never memoized.

The processes a test starts share the memo through files: where LIT_ACTIVATION_TEST_TOKENS names a
directory (conftest.py makes one per test session, and the processes inherit it), each tokenized
corpus is also written there, whole or not at all (a new name, then a rename), as a numpy array read
back with `allow_pickle=False`; startup/sitecustomize.py installs the memo in a child process when it
first imports the module that tokenizes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from lit_activation.data import samples

VARIABLE = "LIT_ACTIVATION_TEST_TOKENS"  # the directory of the memo's files, shared by a session's processes

# numpy copies, which torch's dispatch never sees: a memory test that tracks a callback's tensors counts
# one stream per call, the one the caller gets, as without the memo
_memo: dict[tuple[str, str], np.ndarray] = {}


def fingerprint(tokenizer: object) -> str | None:
    """What decides a fast tokenizer's ids: its class and its serialized pipeline; None for any other."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return hashlib.sha256(f"{type(tokenizer).__qualname__}\0{backend.to_str()}".encode()).hexdigest()


def _shared(key: tuple[str, str], tokenize: Callable[[], torch.Tensor]) -> tuple[np.ndarray, torch.Tensor | None]:
    """The ids of `key` as the memo keeps them (a numpy copy), and the tensor when they were tokenized
    now: read from the run's directory when there, else tokenized (and written there, with a directory)."""
    directory = os.environ.get(VARIABLE)
    path = Path(directory or ".") / f"{key[0][:32]}-{key[1][:32]}.npy"
    shared = bool(directory) and path.parent.is_dir()  # none, or the run that made it has ended
    if shared and path.is_file():
        return np.load(path, allow_pickle=False), None
    ids = tokenize()
    array = ids.numpy().copy()  # the caller may write into `ids`
    if shared:
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        with open(partial, "wb") as f:
            np.save(f, array)
        os.replace(partial, path)  # another process reads it whole or not at all
    return array, ids


def install() -> None:
    """Memoize `samples.token_stream` in this process (once; its callers look it up there at each call)."""
    original = samples.token_stream
    if getattr(original, "memoized", False):
        return

    def token_stream(texts: Sequence[str], tokenizer: object, separator: str = "\n\n") -> torch.Tensor:
        key = fingerprint(tokenizer)
        if key is None:
            return original(texts, tokenizer, separator)
        text = hashlib.sha256(separator.join(texts).encode()).hexdigest()
        if (key, text) in _memo:
            return torch.from_numpy(_memo[(key, text)]).clone()
        _memo[(key, text)], fresh = _shared((key, text), lambda: original(texts, tokenizer, separator))
        return fresh if fresh is not None else torch.from_numpy(_memo[(key, text)]).clone()

    token_stream.memoized = True
    token_stream.original = original  # what the memo stands for (tests/test_tokens_memo.py compares them)
    samples.token_stream = token_stream
