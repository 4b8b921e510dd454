"""How the engine forms its products: split-bf16 products against an fp64 per-sample loop, and the
matmul precision pinned whatever the process set (engine/products.py)."""

from __future__ import annotations

import pytest
import torch

from lit_activation.engine import EngineSettings, taylor_scores
from lit_activation.engine.products import pinned_matmul_precision
from tests.helpers.engine import bf16_and_fp32_twin, fp64_scores, max_normalised_error, padded_batch


@pytest.mark.parametrize(("arch", "stored", "target"), [("llama", "bfloat16", "max_logit"), ("gpt2", "float32", "max_logit"), ("llama", "float32", "loss")])
def test_split_products_are_as_accurate_as_ieee_fp32_against_fp64(arch, stored, target, tiny_model):
    """Split products (emulated on the CPU: exact bf16 part products, fp32 sums) against an fp64
    per-sample loop: within 2× the plain fp32 path's error and far below 1e-5 of each module's max.
    bf16-stored weights are one exact part; fp32 ones (GPT-2's Conv1D among them) three."""
    model = tiny_model(arch) if stored == "float32" else bf16_and_fp32_twin(arch)[0]
    ids, mask = padded_batch("left")
    reference = [fp64_scores(model, ids[r][mask[r].bool()], target) for r in range(ids.shape[0])]
    errors = {}
    for matmul in ("ieee", "split"):
        scores = taylor_scores(model, ids, mask, EngineSettings(target=target, matmul=matmul))
        errors[matmul] = max_normalised_error(scores, reference)
    assert errors["split"] <= 1e-5
    assert errors["split"] <= 2 * errors["ieee"] + 1e-7, errors  # 1e-7: both at fp32 rounding, ~1e-8 here


def test_split_products_patch_every_linear_and_restore_them(tiny_model):
    model = tiny_model()
    seen = []

    def consumer(tile):
        seen.append(sum("forward" in vars(m) for m in model.modules()))

    from lit_activation.engine import stream_taylor_scores

    stream_taylor_scores(model, *padded_batch("right"), consumer, EngineSettings(matmul="split"))
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert set(seen) == {linears}  # fp32 weights, yet every linear (lm_head too) runs split
    assert not any("forward" in vars(m) for m in model.modules())


@pytest.fixture
def restore_precision():
    """The test changes the process-wide setting on purpose; put every handle back after it."""
    with pinned_matmul_precision():  # saves and restores all of them (what is under test is used inside)
        pass
    saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision)
    yield
    torch.set_float32_matmul_precision(saved[0])
    torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision = saved[1:]


def precision_now() -> tuple[str, str, str, bool]:
    return (
        torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision, torch.backends.fp32_precision,
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
    )


@pytest.mark.parametrize("matmul", ["ieee", "split"])
def test_scores_are_the_same_under_every_global_matmul_precision(matmul, restore_precision, tiny_model):
    """Lightning's start-up tip invites torch.set_float32_matmul_precision("high"): one-pass TF32 on
    a GPU (bf16 passes on some CPUs, "medium"). The engine pins IEEE fp32 for its own products and
    gives the setting back."""
    model = tiny_model()
    ids, mask = padded_batch("left")
    settings = EngineSettings(matmul=matmul)
    torch.set_float32_matmul_precision("highest")
    baseline = taylor_scores(model, ids, mask, settings)
    inside: list[tuple] = []

    def spy(tile):
        inside.append(precision_now())

    from lit_activation.engine import stream_taylor_scores

    for setting in ("high", "medium"):
        torch.set_float32_matmul_precision(setting)
        before = precision_now()
        assert before[0] == "tf32"  # precondition: the process really asks for reduced precision
        scores = taylor_scores(model, ids, mask, settings)
        for name in baseline:
            assert torch.equal(scores[name], baseline[name]), (setting, name)
        stream_taylor_scores(model, ids, mask, spy, settings)
        assert set(inside) == {("ieee", "ieee", "ieee", False)}, inside[:2]
        assert precision_now() == before and torch.get_float32_matmul_precision() == setting  # given back
        inside.clear()


def test_the_pin_is_restored_after_an_error(restore_precision):
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    before = precision_now()
    with pytest.raises(RuntimeError, match="boom"), pinned_matmul_precision():
        assert precision_now()[0] == "ieee"
        raise RuntimeError("boom")
    assert precision_now() == before


def test_the_device_probe_accepts_fp32_accurate_splits_and_rejects_lossy_ones(monkeypatch, caplog):
    """A device's first split pass checks the products against fp64 (`split_works_on`): a GPU whose
    bf16 GEMMs did not sum in fp32 would fall back to plain fp32 products, with a warning."""
    from lit_activation.engine import products

    assert products._probe_split(torch.device("cpu"))
    monkeypatch.setattr(products, "split_linear", lambda x, w: x.bfloat16().float() @ w.float().t())  # one bf16 pass
    assert not products._probe_split(torch.device("cpu"))
    assert "miss fp32 accuracy" in caplog.text
