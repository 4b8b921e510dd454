"""Batched Taylor scores equal the naive per-sample autograd loop (SPEC.md §1)."""

from __future__ import annotations

import pytest
import torch
from naive import naive_scores

from lit_activation.models import linear_modules
from lit_activation.scores import last_positions, stream_taylor_scores, taylor_scores
from lit_activation.tiny import ARCHITECTURES, tiny_model


def padded_batch(side: str, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows of lengths 9, 6, 8 padded to 9 on `side`."""
    g = torch.Generator().manual_seed(seed)
    lengths = [9, 6, 8]
    ids = torch.zeros((3, 9), dtype=torch.long)
    mask = torch.zeros((3, 9), dtype=torch.long)
    for r, n in enumerate(lengths):
        span = slice(9 - n, 9) if side == "left" else slice(0, n)
        ids[r, span] = torch.randint(4, 100, (n,), generator=g)
        mask[r, span] = 1
    return ids, mask


def assert_matches_naive(model, ids, mask, target) -> None:
    batched = taylor_scores(model, ids, mask, target)
    for r in range(ids.shape[0]):
        reference = naive_scores(model, ids[r][mask[r].bool()], target)
        assert batched.keys() == reference.keys()
        for name, ref in reference.items():
            got = batched[name][r]
            assert got.dtype == torch.float32 and got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_equals_naive_max_logit(arch, side):
    assert_matches_naive(tiny_model(arch), *padded_batch(side), "max_logit")


@pytest.mark.parametrize("target", ["log_prob", "loss"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_equals_naive_other_targets(arch, target):
    assert_matches_naive(tiny_model(arch), *padded_batch("right"), target)


def test_conv1d_scores_have_weight_layout():
    model = tiny_model("gpt2")
    ids, mask = padded_batch("right")
    scores = taylor_scores(model, ids, mask)
    for name, module in linear_modules(model).items():
        assert scores[name].shape == (3, *module.weight.shape)


def test_streaming_sees_each_module_once_and_scores_are_nonzero():
    model = tiny_model("llama")
    seen: dict[str, tuple] = {}

    def consumer(name, scores):
        assert name not in seen
        seen[name] = (tuple(scores.shape), float(scores.sum()))

    values = stream_taylor_scores(model, *padded_batch("left"), consumer)
    assert set(seen) == set(linear_modules(model))
    assert all(total > 0 for _, total in seen.values())
    assert values.shape == (3,) and not values.requires_grad


def test_bf16_model_gives_fp32_scores_close_to_fp32_model():
    ids, mask = padded_batch("right")
    exact = taylor_scores(tiny_model("llama"), ids, mask)
    half = taylor_scores(tiny_model("llama").to(torch.bfloat16), ids, mask)
    for name in exact:
        assert half[name].dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(half[name].flatten(), exact[name].flatten(), dim=0)
        assert cos > 0.95


def test_weights_stay_frozen_and_gradless():
    model = tiny_model("qwen2")
    taylor_scores(model, *padded_batch("right"))
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


def test_inference_mode_is_a_clear_error():
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        taylor_scores(tiny_model("llama"), *padded_batch("right"))


def test_bad_target_and_empty_row_are_errors():
    ids, mask = padded_batch("right")
    with pytest.raises(ValueError, match="max_logit"):
        taylor_scores(tiny_model("llama"), ids, mask, target="entropy")
    mask[1] = 0
    with pytest.raises(ValueError, match="no real token"):
        taylor_scores(tiny_model("llama"), ids, mask)


def test_last_positions_left_and_right():
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_positions(mask).tolist() == [2, 3, 3]
