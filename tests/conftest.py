from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/fixtures.py and tests/naive.py
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network in tests, ever
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Triton kernels run on the CPU in its interpreter, which must be chosen before triton is imported
# (engine/kernels.py); no test has a GPU.
os.environ.setdefault("TRITON_INTERPRET", "1")
logging.getLogger("gensim").setLevel(logging.WARNING)

from fixtures import write_benchmarks  # noqa: E402
from nudge import install_from_env  # noqa: E402

install_from_env()  # LIT_ACTIVATION_TEST_NUDGE_ULPS=k: every batched score moved by up to k ulps (tests/nudge.py)


@pytest.fixture(scope="session")
def bench_files(tmp_path_factory) -> dict[str, str]:
    """data_files for every hub benchmark, in their real field layouts."""
    return write_benchmarks(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="session")
def tiny_tok():
    from lit_activation.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture
def no_model_loading(monkeypatch) -> type[Exception]:
    """The model loader replaced by one that raises the returned exception class: a check that must
    come before the weights load either stops the run with its own error or lets this one through."""
    from fixtures import ModelLoaded

    def no_loading(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr("lit_activation.module.load_causal_lm", no_loading)
    return ModelLoaded
