"""The fused Triton kernel (engine/kernels.py), run by Triton's CPU interpreter (conftest sets
TRITON_INTERPRET=1): |W| ⊙ Σ_s |a_s @ b_s| against fp64 sums, and Finding 1 sums through the
engine against an fp64 per-sample loop."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_activation.cli import main
from lit_activation.engine import EngineSettings, kernels, linear_kernel, split, stream_taylor_scores
from lit_activation.engine.split import concat_left, concat_right, split_bf16
from lit_activation.models.layers import linear_modules
from tests.helpers.engine import bf16_and_fp32_twin, fp64_scores, fused_sums, padded_batch, record_loads
from tests.helpers.interpreter import needs_interpreter, needs_triton

pytestmark = [needs_triton, pytest.mark.slow]  # kernel launches also need an interpreter that runs here: @needs_interpreter (tests/helpers/interpreter.py)

EPS32 = 2.0**-24
ROOT = Path(__file__).parents[2]


def fp64_reference(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact result and, per element, the scale Σ_s Σ_k |a||b|·|w| that bounds fp32 rounding."""
    exact = (a.double() @ b.double()).abs().sum(0) * w.double()
    scale = (a.double().abs() @ b.double().abs()).sum(0) * w.double()
    return exact, scale




def kernel_matches_fp64(rows: int, k: int, cols: int, seed: int) -> None:
    """Random fp32 operands of 2 samples through the kernel against fp64, within fp32's bound; the
    output starts NaN, so a block no program reached fails too."""
    g = torch.Generator().manual_seed(seed)
    a, b, w = torch.randn(2, rows, k, generator=g), torch.randn(2, k, cols, generator=g), torch.rand(rows, cols, generator=g)
    exact, scale = fp64_reference(a, b, w)
    out = kernels.weighted_abs_sum(a, b, w, torch.full((rows, cols), float("nan")))
    assert bool(((out.double() - exact).abs() <= 4 * k * EPS32 * scale).all())


@needs_interpreter
@pytest.mark.parametrize("dtype", ["float32", "split-bf16"])
def test_weighted_abs_sum_equals_fp64_on_uneven_strided_operands(dtype):
    """Sizes that fill no block (rows 70 and cols 90 vs 64, K 45 vs 32), a row slice of a larger
    operand (strided, as the engine passes a tile), fp32 within its own rounding bound."""
    g = torch.Generator().manual_seed(0)
    batch, k = 3, 45
    left_full, right, w = torch.randn(batch, 100, k, generator=g), torch.randn(batch, k, 90, generator=g), torch.rand(70, 90, generator=g)
    left = left_full[:, 20:90]
    assert not left.is_contiguous()
    exact, scale = fp64_reference(left, right, w)
    if dtype == "float32":
        a, b = left, right
    else:  # the engine's split operands: six bf16 part products laid along K
        a, b = concat_left(split_bf16(left), 3), concat_right(split_bf16(right), 3)
    out = kernels.weighted_abs_sum(a, b, w, torch.full((70, 90), float("nan")))
    bound = 4 * k * EPS32 * scale  # k fp32 additions per product, the batch sum and ×|w|, with room
    assert bool(((out.double() - exact).abs() <= bound).all()), float(((out.double() - exact).abs() / scale).max())


@needs_interpreter
@pytest.mark.parametrize("group", [1, 4, 6, 10])
def test_every_block_is_computed_once_whatever_the_program_grouping(group, monkeypatch):
    """6 row blocks × 3 column blocks of 16: groups of 4 row blocks leave a short last group of 2,
    6 one full group, 10 one group taller than the rows; a block no program reached stays NaN."""
    monkeypatch.setattr(kernels, "BLOCK_R", 16)
    monkeypatch.setattr(kernels, "BLOCK_C", 16)
    monkeypatch.setattr(kernels, "BLOCK_K", 16)
    monkeypatch.setattr(kernels, "GROUP_R", group)
    kernel_matches_fp64(rows=83, k=20, cols=37, seed=group)


@needs_interpreter
@pytest.mark.parametrize(("cols", "path"), [(30, "pointers"), (32, "tma")])
@pytest.mark.parametrize(("positions", "chains"), [(60, 1), (100, 2), (300, 5)])
def test_chains_along_k_cover_every_k_once(positions, chains, cols, path, monkeypatch):
    """Split operands (six part products along K) in the plain path's chains, made short here: the
    small part products and the first chain in one accumulator, then chains of 64 (ALIGN 16) whose
    ends fall inside K blocks of 32 (5 × positions + the first chain is no multiple of 32). Each K
    entry must be summed in exactly one chain: one in two, or in none, misses fp64 by far. 60
    positions: one chain. 30 columns leave the rows of b unaligned (pointer loads), 32 do not (TMA,
    where a chain's end inside a block is masked after the load)."""
    monkeypatch.setattr(split, "CHAIN_SCALE", 4)
    monkeypatch.setattr(split, "MIN_CHAIN", 64)
    monkeypatch.setattr(split, "ALIGN", 16)
    step = split.chain_step(positions)
    assert -(-positions // step) == chains and (5 * positions + step) % 32
    seen = record_loads(monkeypatch, kernels, "operand_descriptors")
    g = torch.Generator().manual_seed(positions)
    a, b, w = torch.randn(2, 40, positions, generator=g), torch.randn(2, positions, cols, generator=g), torch.rand(40, cols, generator=g)
    exact, scale = fp64_reference(a, b, w)
    left, right = concat_left(split_bf16(a), 3), concat_right(split_bf16(b), 3)
    out = kernels.weighted_abs_sum(left, right, w, torch.full((40, cols), float("nan")), positions)
    assert seen == [path]
    assert bool(((out.double() - exact).abs() <= 4 * positions * EPS32 * scale).all()), float(((out.double() - exact).abs() / scale).max())


@needs_interpreter
@pytest.mark.parametrize("positions", [40, 100])
def test_tma_loads_cover_every_block_of_a_row_slice(positions, monkeypatch):
    """Blocks of 16 over a tile of 83 rows sliced from 100 (as the engine passes one) and 48
    columns: several programs, each loading its own blocks through TMA descriptors, in one chain
    (40 positions) or several whose ends fall inside K blocks (100); fp64 within fp32's bound."""
    for name in ("BLOCK_R", "BLOCK_C", "BLOCK_K"):
        monkeypatch.setattr(kernels, name, 16)
    monkeypatch.setattr(kernels, "GROUP_R", 2)
    monkeypatch.setattr(split, "CHAIN_SCALE", 4)
    monkeypatch.setattr(split, "MIN_CHAIN", 64)
    monkeypatch.setattr(split, "ALIGN", 8)
    seen = record_loads(monkeypatch, kernels, "operand_descriptors")
    g = torch.Generator().manual_seed(positions)
    a, b, w = torch.randn(2, 100, positions, generator=g), torch.randn(2, positions, 48, generator=g), torch.rand(83, 48, generator=g)
    left, right = concat_left(split_bf16(a), 3)[:, 10:93], concat_right(split_bf16(b), 3)
    exact, scale = fp64_reference(a[:, 10:93], b, w)
    out = kernels.weighted_abs_sum(left, right, w, torch.full((83, 48), float("nan")), positions)
    assert seen == ["tma"] and (split.chain_step(positions) < positions) == (positions == 100)
    assert bool(((out.double() - exact).abs() <= 4 * positions * EPS32 * scale).all()), float(((out.double() - exact).abs() / scale).max())


def test_a_full_span_outside_k_is_refused():
    with pytest.raises(ValueError, match=r"positions must be in 1\.\.3 \(the full-scale span of K\); got 4"):
        kernels.weighted_abs_sum(torch.ones(1, 2, 3), torch.ones(1, 3, 2), torch.ones(2, 2), torch.empty(2, 2), 4)


@needs_interpreter
def test_weighted_abs_sum_takes_the_absolute_value_per_sample_before_the_batch_sum():
    """Hand values: sample products +2 and −2 sum to 0 but |+2| + |−2| = 4; weight 0.5 → 2."""
    a = torch.tensor([[[1.0]], [[-1.0]]])  # (2, 1, 1)
    b = torch.tensor([[[2.0]], [[2.0]]])
    out = kernels.weighted_abs_sum(a, b, torch.tensor([[0.5]]), torch.empty(1, 1))
    assert out.tolist() == [[2.0]]


def test_mismatched_operands_are_refused_in_one_line():
    with pytest.raises(ValueError, match="must both be float32 or both bfloat16"):
        kernels.weighted_abs_sum(torch.ones(1, 2, 3), torch.ones(1, 3, 2).bfloat16(), torch.ones(2, 2), torch.empty(2, 2))
    with pytest.raises(ValueError, match="shapes do not match"):
        kernels.weighted_abs_sum(torch.ones(1, 2, 3), torch.ones(1, 4, 2), torch.ones(2, 2), torch.empty(2, 2))
    meta = dict(device="meta")  # shapes only: (2, 2¹⁵, 2¹⁶) reaches 2³² elements
    with pytest.raises(ValueError, match=r"indexes in int32: operands \(2, 32768, 65536\) and \(2, 65536, 4\) reach beyond"):
        big, right, small = torch.empty(2, 2**15, 2**16, **meta), torch.empty(2, 2**16, 4, **meta), torch.empty(2**15, 4, **meta)
        kernels.weighted_abs_sum(big, right, small, small)




@needs_interpreter
@pytest.mark.parametrize(("arch", "stored", "matmul"), [("llama", "bfloat16", "split"), ("llama", "float32", "ieee"), ("gpt2", "float32", "split")])
def test_fused_finding1_sums_equal_an_fp64_per_sample_loop(arch, stored, matmul, tiny_model):
    """Σ_s A(s, w) through the engine with the fused kernel, on a padded batch, against the fp64
    per-sample loop; as accurate as the plain path measured the same way (GPT-2: Conv1D layout)."""
    model = tiny_model(arch) if stored == "float32" else bf16_and_fp32_twin(arch)[0]
    ids, mask = padded_batch("left")
    reference = [fp64_scores(model, ids[r][mask[r].bool()]) for r in range(ids.shape[0])]
    exact = {name: sum(ref[name] for ref in reference) for name in reference[0]}
    errors = {}
    for fused in (False, True):
        got = fused_sums(model, ids, mask, matmul=matmul, fused=fused, tile_mb=0.001)  # several row tiles per module
        errors[fused] = max(float((got[n].double() - e).abs().max() / e.abs().max()) for n, e in exact.items())
    assert errors[True] <= 1e-5
    assert errors[True] <= 2 * errors[False] + 1e-7, errors


def test_a_fused_tile_forms_per_sample_values_when_a_consumer_reads_them(tiny_model):
    """A consumer that needs |G_s| (LLMDcos) still gets them from a fused pass, equal to the plain pass's."""
    model = tiny_model()
    ids, mask = padded_batch("right")
    seen = {}

    def keep(fused):
        def consumer(tile):
            seen[(fused, tile.name, tile.rows.start)] = tile.scores().clone()

        return consumer

    for fused in (False, True):
        stream_taylor_scores(model, ids, mask, keep(fused), EngineSettings(fused=fused, tile_mb=0.001))
    plain = {key[1:]: v for key, v in seen.items() if not key[0]}
    assert len(plain) > len(linear_modules(model))  # several tiles per module
    for key, value in plain.items():
        torch.testing.assert_close(seen[(True, *key)], value, rtol=0, atol=0)


@pytest.mark.parametrize("option", ["fused", "fused_linear"])
def test_fused_off_cuda_without_the_interpreter_is_one_clear_error(monkeypatch, option, tiny_model):
    model = tiny_model()
    ids, mask = padded_batch("right")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=f"engine.{option}: true runs on CUDA .*not on cpu; accepted here: false"):
        stream_taylor_scores(model, ids, mask, lambda tile: None, EngineSettings(**{option: True}))
    monkeypatch.setattr(kernels, "triton", None)
    with pytest.raises(ValueError, match=f"engine.{option}: true needs triton"):
        stream_taylor_scores(model, ids, mask, lambda tile: None, EngineSettings(**{option: True}))


@needs_interpreter
@pytest.mark.parametrize("option", ["fused", "fused_linear"])
def test_a_counts_run_under_lightning_goes_through_the_kernel(tmp_path, bench_files, monkeypatch, option):
    """The option reaches the run: every tile of a Finding 1 run is reduced by the kernel, or every
    linear's forward and backward runs through the linear one (their numbers are checked against
    fp64 above and in test_linear_kernel.py), and the counts are written."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    from lit_activation.callbacks.counts import ActivationCounts
    from lit_activation.data.datamodule import ActivationDataModule
    from lit_activation.module import ActivationModule

    calls = []
    fused, linear = kernels.weighted_abs_sum, linear_kernel.linear
    monkeypatch.setattr("lit_activation.engine.scores.weighted_abs_sum", lambda *a: calls.append(a[0].shape) or fused(*a))
    monkeypatch.setattr(linear_kernel, "linear", lambda *a: calls.append(a[0].shape) or linear(*a))
    module = ActivationModule(model="tiny-llama", engine=EngineSettings(**{option: True}, matmul="split"))
    dm = ActivationDataModule(["boolq", "mmlu"], data_files=bench_files, num_samples=4, batch_size=2, max_length=64)
    trainer = Trainer(
        accelerator="cpu", devices=1, inference_mode=False, logger=TensorBoardLogger(tmp_path, name="t"),
        callbacks=[ActivationCounts(gamma=1e-3)], enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.predict(module, datamodule=dm, return_predictions=False)
    counts = json.loads((tmp_path / "t" / "version_0" / "counts.json").read_text())
    assert {name: d["n_samples"] for name, d in counts["datasets"].items()} == {"boolq": 4, "mmlu": 4}
    if option == "fused":
        assert len(calls) == 4 * len(module.scored_modules)  # 2 datasets × 2 batches × every module (one tile each)
    else:  # every linear, lm_head included, forward and backward, per batch
        assert len(calls) == 4 * 2 * sum(isinstance(m, torch.nn.Linear) for m in module.model.modules())


@pytest.mark.parametrize("option", ["fused", "fused_linear"])
def test_the_cli_refuses_fused_where_it_cannot_run_before_loading(tmp_path, monkeypatch, capsys, option):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("lit_activation.module.load_causal_lm", lambda *a: pytest.fail("loaded the model before refusing"))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--config", str(ROOT / "configs" / "counts_embedded.yaml"), f"--model.engine.{option}", "true", "--trainer.accelerator", "cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: engine.{option}: true runs on CUDA (or under TRITON_INTERPRET=1), not on cpu; accepted here: false"


@pytest.mark.skipif(importlib.util.find_spec("triton.backends.nvidia") is None, reason="this triton has no NVIDIA backend to compile with")
def test_the_kernels_compile_for_hopper_and_multiply_on_its_tensor_cores():
    """The interpreter above runs the kernels' arithmetic but compiles nothing. Here Triton compiles
    both kernels' default launches for sm_90 (H100/H200) without a GPU (its wheel ships ptxas), and
    every split product must lower to Hopper's tensor-core instruction (wgmma), IEEE ones to none."""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, "benchmarks/compile_check.py", "--quick"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "FP_FUSION" not in done.stderr, "fp fusion is left to Triton's default (kernels.FP_FUSION pins it)"
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| weighted_abs_sum") or line.startswith("| linear")]
    products = {(row[0].strip("| "), row[1]): int(row[6]) for row in rows}  # (kernel, products) -> wgmma instructions
    assert set(products) == {
        ("weighted_abs_sum", "split, one chain"), ("weighted_abs_sum", "split, chained"), ("weighted_abs_sum", "ieee, pointers"),
        ("weighted_abs_sum", "split, chained, pointers"),
        ("linear", "split, bf16 W"), ("linear", "split, bf16 Wᵀ (δ·W)"), ("linear", "split, fp32 W"), ("linear", "split, fp32 Wᵀ (δ·W)"),
        ("linear", "split, fp32 W of bf16 values"),
        ("linear", "split, bf16 W, pointers"),
    }
    assert all(count > 0 for (_, mode), count in products.items() if mode.startswith("split"))
    assert products[("weighted_abs_sum", "ieee, pointers")] == 0
