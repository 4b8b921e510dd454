from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network in tests, ever
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Triton kernels run on the CPU in its interpreter, which must be chosen before triton is imported
# (engine/kernels.py); no test has a GPU.
os.environ.setdefault("TRITON_INTERPRET", "1")
logging.getLogger("gensim").setLevel(logging.WARNING)

import torch  # noqa: E402 - after TRITON_INTERPRET

from tests.helpers import tokens  # noqa: E402
from tests.helpers.benchmark_files import write_benchmarks  # noqa: E402
from tests.helpers.nudge import install_from_env  # noqa: E402

install_from_env()  # LIT_ACTIVATION_TEST_NUDGE_ULPS=k: every batched score moved by up to k ulps (tests/helpers/nudge.py)
tokens.install()  # a corpus is tokenized once per test process, not once per run (tests/helpers/tokens.py)
if not os.environ.get(tokens.VARIABLE):  # and once per session: the processes it starts (xdist's, the pool's) share the files
    os.environ[tokens.VARIABLE] = tempfile.mkdtemp(prefix="lit-activation-tokens-")
    atexit.register(shutil.rmtree, os.environ[tokens.VARIABLE], True)


@pytest.fixture(scope="session")
def bench_files(tmp_path_factory) -> dict[str, str]:
    """data_files for every hub benchmark, in their real field layouts."""
    return write_benchmarks(tmp_path_factory.mktemp("bench"))


@pytest.fixture
def tiny_model() -> Callable[..., torch.nn.Module]:
    """Tiny random models, built from a config in milliseconds (lit_activation.models.tiny):
    `tiny_model()` is a Llama, `tiny_model("gpt2", layers=3)` another architecture or size."""
    from lit_activation.models.tiny import tiny_model as build

    return lambda arch="llama", **options: build(arch, **options)


@pytest.fixture(scope="session")
def tiny_tok():
    from lit_activation.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture
def no_model_loading(monkeypatch) -> type[Exception]:
    """The model loader replaced by one that raises the returned exception class: a check that must
    come before the weights load either stops the run with its own error or lets this one through."""
    from tests.helpers.benchmark_files import ModelLoaded

    def no_loading(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr("lit_activation.module.load_causal_lm", no_loading)
    return ModelLoaded


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The processes of the multi-process runs' pool end with the session (tests/helpers/pool.py)."""
    from tests.helpers.pool import POOL

    POOL.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` need CUDA: skipped, saying so, where there is none (CI, this project's machines).
    Under pytest-xdist (`-n 2 --dist loadgroup`, as `make test` runs), the tests that run commands on the
    pool of processes (tests/helpers/pool.py) share one worker, and so one pool, and so do the tests of the
    real model (they convert and cache it once)."""
    from tests.helpers import processes

    for item in items:
        module = getattr(item, "module", None)
        if "ddp" in item.keywords or getattr(module, "cli", None) is processes.cli:
            item.add_marker(pytest.mark.xdist_group("pool"))
        elif "embedded" in item.keywords:
            item.add_marker(pytest.mark.xdist_group("embedded"))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
