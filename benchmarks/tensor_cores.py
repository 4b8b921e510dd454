"""Split products' accuracy under a model of a Hopper tensor core's sums, on a CPU (no GPU needed).

    python benchmarks/tensor_cores.py

Each row forms a product with the engine's own split code (lit_activation/engine/split.py and
products.py), with only the bf16 GEMM replaced by the bit-level model of engine/tensor_core.py, and
prints its error against fp64 as a ratio to a CUDA-core fp32 GEMM's error on the same operands
(one fused multiply-add per k, rounded to nearest: what `matmul: ieee` runs on a GPU). The engine's
bound is at most 2× the IEEE path's error. Layouts:
- "largest first": the part products along K with x₀·y₀ first (this engine before the change);
- "smallest first": the same parts in the opposite order, one chain over all of K;
- "engine": smallest first and the full-scale products in chains of `chain_length(K)`;
- "fused linear kernel": engine/linear_kernel.py's order (per K block the small part products
  before x₀·W₀, chains of `kernel_chain(K)` promoted in fp32).

What it shows is a model's prediction (engine/tensor_core.py follows MMA-Sim's published Hopper
algorithm), not a measurement: benchmarks/gpu.py measures the same errors on the GPU itself
(`product_errors`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from unittest import mock

import torch

import lit_activation.engine.split as split
from lit_activation.engine import linear_kernel
from lit_activation.engine.products import SplitProducts
from lit_activation.engine.tensor_core import cuda_core_matmul, fused_linear_model, tensor_core_bf16_matmul, tensor_core_matmul


def errors(y: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """(median relative error, max-normalised error) against fp64."""
    diff = (y.double() - exact).abs()
    return float((diff / exact.abs()).median()), float(diff.max() / exact.abs().max())


def gradient_rows(positions: int, rows: int, cols: int, seed: int) -> dict[str, Callable[[], torch.Tensor]]:
    """Per-sample gradients δ_s x_s over `positions` (two samples), in each layout."""
    g = torch.Generator().manual_seed(seed)
    delta, x = torch.randn(2, rows, positions, generator=g), torch.randn(2, positions, cols, generator=g)
    products = SplitProducts()
    left, right = products.gradient_operands(delta, x)
    blocks = left.shape[-1] // positions
    reverse = torch.cat([torch.arange(i * positions, (i + 1) * positions) for i in reversed(range(blocks))])

    def engine(scale: int = split.CHAIN_SCALE) -> torch.Tensor:
        with mock.patch.object(split, "CHAIN_SCALE", scale):
            return products.gradient(left, right, torch.empty(2, rows, cols), positions)

    return {
        "exact": lambda: delta.double() @ x.double(),
        "cuda cores (fp32 FMA)": lambda: cuda_core_matmul(delta, x),
        "largest first": lambda: tensor_core_matmul(left[..., reverse], right[:, reverse]),
        "smallest first": lambda: engine(0),
        "engine": engine,
    }


def linear_rows(k: int, rows: int, cols: int, seed: int) -> dict[str, Callable[[], torch.Tensor]]:
    """x·Wᵀ from a bf16 weight of `k` inputs, in each layout (x's parts are separate GEMMs here)."""
    g = torch.Generator().manual_seed(seed)
    x, weight = torch.randn(rows, k, generator=g), (torch.randn(cols, k, generator=g) * 0.02).bfloat16()

    def engine(scale: int = split.CHAIN_SCALE) -> torch.Tensor:
        with mock.patch.object(split, "CHAIN_SCALE", scale):
            return split.split_linear(x, weight)

    return {
        "exact": lambda: x.double() @ weight.double().t(),
        "cuda cores (fp32 FMA)": lambda: cuda_core_matmul(x, weight.float().t()),
        "smallest first": lambda: engine(0),
        "engine": engine,
        "fused linear kernel": lambda: fused_linear_model(x, weight, linear_kernel.kernel_chain(k, 3), linear_kernel.BLOCK_K),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--cols", type=int, default=24)
    parser.add_argument("--positions", type=int, nargs="*", default=[128, 512, 2048], help="T of the per-sample gradients")
    parser.add_argument("--widths", type=int, nargs="*", default=[4096, 11008], help="K of the linears (Llama-2-7B: 4096, 11008)")
    args = parser.parse_args()
    cases = [(f"G_s, T = {t}", t, gradient_rows(t, args.rows, args.cols, t)) for t in args.positions]
    cases += [(f"x·Wᵀ, K = {k}", k, linear_rows(k, args.rows, args.cols, k)) for k in args.widths]
    print("| product | chain | layout | median error | × CUDA cores | max-normalised | × CUDA cores |\n|---|---|---|---|---|---|---|")
    with mock.patch.object(split, "bf16_matmul", tensor_core_bf16_matmul):
        for name, k, rows in cases:
            exact = rows.pop("exact")()
            base = errors(rows["cuda cores (fp32 FMA)"](), exact)
            for layout, run in rows.items():
                median, worst = errors(run(), exact)
                chain = {"engine": split.chain_length(k), "fused linear kernel": linear_kernel.kernel_chain(k, 3)}.get(layout, "-")
                print(f"| {name} | {chain} | {layout} | {median:.2e} | {median / base[0]:.2f} | {worst:.2e} | {worst / base[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
