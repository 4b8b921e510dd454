"""The tests' memo of tokenized running text: a corpus is tokenized once per test process, not once per run.

Every run on a corpus tokenizes all of it (`samples.token_stream`: windows, calibration, perplexity),
and the tests run many on the same embedded ones with the same tokenizer: the 3 M characters of the
embedded Wikipedia stand-in take seconds each time with the tiny character tokenizer, for a run that
reads its first 1024 tokens. `install()` wraps `token_stream` so that the same text under the same
tokenizer (its class and its whole serialized pipeline: normalizer, pre-tokenizer, model, special
tokens) is tokenized once; each caller gets its own copy. The ids are the function's own, so no test
sees other inputs. A tokenizer without a serialized pipeline (a slow one) is never memoized.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from lit_activation.data import samples

_memo: dict[tuple[str, str], torch.Tensor] = {}


def fingerprint(tokenizer: object) -> str | None:
    """What decides a fast tokenizer's ids: its class and its serialized pipeline; None for any other."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return hashlib.sha256(f"{type(tokenizer).__qualname__}\0{backend.to_str()}".encode()).hexdigest()


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
        if (key, text) not in _memo:
            _memo[(key, text)] = original(texts, tokenizer, separator)
        return _memo[(key, text)].clone()

    token_stream.memoized = True
    samples.token_stream = token_stream
