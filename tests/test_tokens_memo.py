"""The tests' memo of tokenized corpora (tests/helpers/tokens.py) hands out exactly what the tokenizer gives:
the same ids as the unmemoized call, each tokenizer's own, read back whole from the files that the
processes of a test run share, counted by a memory tracker once per call, and installed in a child process only when it imports the tokenizing
module."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tokenizers import normalizers

from lit_activation.data import samples
from lit_activation.models.tiny import tiny_tokenizer
from lit_activation.planning.simulate import LiveBytes
from tests.helpers import ROOT, child_env, tokens

TEXTS = ["The cat sat on the mat.", "A second document, with Capitals and digits 12345."]


def test_the_memo_gives_the_tokenizer_s_own_ids_and_each_caller_its_own_copy():
    tok = tiny_tokenizer()
    first = samples.token_stream(TEXTS, tok)
    assert samples.token_stream.memoized
    assert torch.equal(first, samples.token_stream.original(TEXTS, tok))
    first.zero_()  # a caller that writes into its ids changes no one else's
    assert torch.equal(samples.token_stream(TEXTS, tok), samples.token_stream.original(TEXTS, tok))


def test_two_tokenizers_that_differ_in_their_pipeline_are_memoized_apart():
    plain, lowered = tiny_tokenizer(), tiny_tokenizer()
    lowered.backend_tokenizer.normalizer = normalizers.Lowercase()
    assert tokens.fingerprint(plain) != tokens.fingerprint(lowered)
    ids = samples.token_stream(TEXTS, plain), samples.token_stream(TEXTS, lowered)
    assert not torch.equal(*ids)  # the capitals tokenize differently
    assert torch.equal(ids[1], samples.token_stream.original(TEXTS, lowered))


def test_the_shared_files_are_read_back_whole_and_only_while_their_directory_exists(tmp_path, monkeypatch):
    monkeypatch.setenv(tokens.VARIABLE, str(tmp_path))
    ids = torch.arange(1000)
    array, fresh = tokens._shared(("a" * 64, "b" * 64), lambda: ids)
    assert fresh is ids and np.array_equal(array, ids.numpy())
    (written,) = tmp_path.iterdir()
    assert written.suffix == ".npy"  # no partial file left

    def never() -> torch.Tensor:
        raise AssertionError("tokenized again")

    array, fresh = tokens._shared(("a" * 64, "b" * 64), never)
    assert fresh is None and np.array_equal(array, ids.numpy())
    monkeypatch.setenv(tokens.VARIABLE, str(tmp_path / "gone"))
    array, fresh = tokens._shared(("a" * 64, "b" * 64), lambda: ids + 1)
    assert np.array_equal(array, (ids + 1).numpy()) and list(tmp_path.iterdir()) == [written]


def test_a_memory_tracker_sees_one_stream_per_call_as_without_the_memo():
    """The memo keeps numpy copies, outside torch's dispatch: a tracked call allocates the ids it hands
    out and nothing more, whether it tokenized them or found them (the memory plan's tests rely on it)."""
    tok = tiny_tokenizer()
    texts = [f"{text} (a text no other test tokenizes)" for text in TEXTS]
    stream = samples.token_stream.original(texts, tok)
    for _ in range(2):  # tokenized, then found
        tracker = LiveBytes(fake=False)
        with tracker:
            ids = samples.token_stream(texts, tok)
        assert torch.equal(ids, stream) and tracker.live == ids.untyped_storage().nbytes()


@pytest.mark.slow
def test_a_child_process_installs_the_memo_when_it_imports_the_tokenizing_module(tmp_path):
    code = (
        "import json, sys\nbefore = 'torch' in sys.modules\nimport lit_activation.data.samples as s\n"
        "print(json.dumps([before, getattr(s.token_stream, 'memoized', False)]))"
    )
    env = child_env(**{tokens.VARIABLE: str(tmp_path)})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, True]
