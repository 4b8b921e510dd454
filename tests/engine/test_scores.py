"""Batched Taylor scores equal the naive per-sample autograd loop (docs/method.md §1)."""

from __future__ import annotations

import pytest
import torch

from lit_activation.engine import EngineSettings, stream_taylor_scores, taylor_scores
from lit_activation.engine.targets import last_positions
from lit_activation.models.layers import linear_modules
from lit_activation.models.tiny import ARCHITECTURES
from tests.helpers.engine import bf16_and_fp32_twin, padded_batch
from tests.helpers.naive import naive_scores

# Batched against naive per-sample scores: fp32 noise, measured up to 3.8e-6 × the module's largest
# score (3-layer Llama, left padding, eager attention). 1e-5 × max keeps a margin on other CPUs and
# BLAS builds; wrong math is off by orders of magnitude more.
ATOL = 1e-5




def assert_matches_naive(model, ids, mask, target) -> None:
    batched = taylor_scores(model, ids, mask, EngineSettings(target=target))
    for r in range(ids.shape[0]):
        reference = naive_scores(model, ids[r][mask[r].bool()], target)
        assert batched.keys() == reference.keys()
        for name, ref in reference.items():
            got = batched[name][r]
            assert got.dtype == torch.float32 and got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=ATOL * float(ref.abs().max()))


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_equals_naive_max_logit(arch, side, tiny_model):
    assert_matches_naive(tiny_model(arch), *padded_batch(side), "max_logit")


@pytest.mark.parametrize("target", ["log_prob", "loss"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_equals_naive_other_targets(arch, target, tiny_model):
    assert_matches_naive(tiny_model(arch), *padded_batch("right"), target)


def test_conv1d_scores_have_weight_layout(tiny_model):
    model = tiny_model("gpt2")
    ids, mask = padded_batch("right")
    scores = taylor_scores(model, ids, mask)
    for name, module in linear_modules(model).items():
        assert scores[name].shape == (3, *module.weight.shape)


def test_tiles_cover_each_module_once_and_scores_are_nonzero(tiny_model):
    model = tiny_model()
    seen: dict[str, list[int]] = {}

    def consumer(tile):
        assert tile.abs_grad.shape[1:] == tile.abs_weight.shape and tile.abs_grad.shape[0] == 3
        assert float(tile.scores().sum()) > 0
        seen.setdefault(tile.name, []).extend(range(tile.rows.start, tile.rows.stop))

    # a budget of 600 bytes: a few rows per tile, so every module is cut into several tiles
    values = stream_taylor_scores(model, *padded_batch("left"), consumer, EngineSettings(tile_mb=600 / 2**20))
    modules = linear_modules(model)
    assert set(seen) == set(modules)
    for name, rows in seen.items():
        assert rows == list(range(modules[name].weight.shape[0])), name  # every row once, in order
    assert values.shape == (3,) and not values.requires_grad




@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("target", ["max_logit", "loss"])
def test_bf16_weights_give_exact_fp32_scores(arch, target):
    stored, twin = bf16_and_fp32_twin(arch)
    ids, mask = padded_batch("right")
    # a small tile budget: the upcast, the scores and the chunked loss all run tile by tile
    batched = taylor_scores(stored, ids, mask, EngineSettings(target=target, tile_mb=4096 / 2**20))
    for r in range(ids.shape[0]):
        reference = naive_scores(twin, ids[r][mask[r].bool()], target)  # fp32 autograd, same weights
        for name, ref in reference.items():
            assert batched[name].dtype == torch.float32
            torch.testing.assert_close(batched[name][r], ref, rtol=1e-4, atol=ATOL * float(ref.abs().max()))
    # nothing of the upcast outlives the call: stored dtypes and the class forwards are back
    assert {p.dtype for p in stored.parameters()} == {torch.bfloat16}
    assert not any("forward" in vars(m) for m in stored.modules())


@pytest.mark.parametrize("arch", ["llama", "opt"])
def test_tiny_tiles_and_loss_chunks_equal_naive(arch, tiny_model):
    model = tiny_model(arch)
    ids, mask = padded_batch("left")
    for target in ("max_logit", "loss"):
        batched = taylor_scores(model, ids, mask, EngineSettings(target=target, tile_mb=1000 / 2**20))
        for r in range(ids.shape[0]):
            for name, ref in naive_scores(model, ids[r][mask[r].bool()], target).items():
                torch.testing.assert_close(batched[name][r], ref, rtol=1e-4, atol=ATOL * float(ref.abs().max()))


def test_bf16_fast_mode_is_close_and_lower_precision_is_refused(tiny_model):
    stored, twin = bf16_and_fp32_twin("llama")
    ids, mask = padded_batch("right")
    fast = taylor_scores(stored, ids, mask, EngineSettings(compute_dtype="bfloat16"))
    exact = taylor_scores(twin, ids, mask)
    for name in exact:
        assert fast[name].dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(fast[name].flatten(), exact[name].flatten(), dim=0)
        assert cos > 0.99  # an approximation by design; its size on a real model is in the README
        # not only the top: every entry above a tenth of the module's largest must be close too.
        # bf16 keeps 8 significant bits; its error is absolute-scale (measured: at most 8.4% of the
        # module's max), so an entry at 0.1·max can be off by tens of percent (measured worst 41%,
        # median per module at most 1.8%). Bounds a bit above: a fast mode that ranks the top right
        # but gets the rest wrong fails the median, one that is wildly off anywhere fails the max.
        big = exact[name] > 0.1 * exact[name].max()
        rel = ((fast[name] - exact[name]).abs() / exact[name])[big]
        assert float(rel.max()) < 0.6 and float(rel.median()) < 0.03, (name, float(rel.max()), float(rel.median()))
    with pytest.raises(ValueError, match="compute_dtype torch.bfloat16 is below the weights' dtype"):
        taylor_scores(tiny_model(), ids, mask, EngineSettings(compute_dtype="bfloat16"))


def test_weights_stay_frozen_and_gradless(tiny_model):
    model = tiny_model("qwen2")
    taylor_scores(model, *padded_batch("right"))
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


def test_inference_mode_is_a_clear_error(tiny_model):
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        taylor_scores(tiny_model(), *padded_batch("right"))


def test_bad_target_and_empty_row_are_errors(tiny_model):
    ids, mask = padded_batch("right")
    with pytest.raises(ValueError, match="max_logit"):
        EngineSettings(target="entropy")
    mask[1] = 0
    with pytest.raises(ValueError, match="no real token"):
        taylor_scores(tiny_model(), ids, mask)


def test_last_positions_left_and_right():
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_positions(mask).tolist() == [2, 3, 3]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
@pytest.mark.parametrize("target", ["max_logit", "loss"])
def test_recomputed_blocks_give_the_same_scores(arch, target, tiny_model):
    """checkpoint_blocks: each module's input comes from the block's recomputation in the backward."""
    model = tiny_model(arch, layers=3)
    ids, mask = padded_batch("left")
    batched = taylor_scores(model, ids, mask, EngineSettings(target=target, checkpoint_blocks=True))
    for r in range(ids.shape[0]):
        for name, ref in naive_scores(model, ids[r][mask[r].bool()], target).items():
            torch.testing.assert_close(batched[name][r], ref, rtol=1e-4, atol=ATOL * float(ref.abs().max()))
    assert not any("forward" in vars(m) for m in model.modules())  # the blocks' own forwards are back
