"""How long one dataset's Finding 1 finish takes (`counts.dataset_summary`): the histogram's
buckets by the bit-range table (`EdgeTable`) against `torch.bucketize`, alternating in one process.

    python benchmarks/finish.py                                     # SmolLM2-135M's modules, CPU
    python benchmarks/finish.py --shape llama-2-7b --device cuda    # 6.5e9 means on a GPU (26 GB)

The means are random log-normal fp32 values (log10 centred at -11.7, σ 0.87 decades) in the
modules of a published shape, built on the meta device, so no weights are read. Each repeat times both
ways; the figures are medians and the ratio is bucketize's time over the table's. A finish at 7B
should take about one engine batch (the GPU report checks ≤ 1 s on one GPU; the host-side finish
of an earlier engine took 48.5 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from unittest import mock

import torch
from machine import describe, sync

from lit_activation.analyses import counts
from lit_activation.models.architectures import model_config
from lit_activation.models.layers import layer_map, linear_modules


def random_means(shape: str, device: str) -> tuple[dict[str, torch.Tensor], dict[str, int], dict[str, str], int]:
    """Log-normal mean scores for every scored module of `shape`, and its layer and kind maps."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config(shape))
    layer_of, kind_of, n_layers = layer_map(model)
    g = torch.Generator(device).manual_seed(0)
    means = {}
    for name, module in linear_modules(model).items():
        values = torch.empty(module.weight.shape, device=device).normal_(generator=g)
        means[name] = (values.mul_(2.0) - 27.0).exp_()
    return means, layer_of, kind_of, n_layers


def timed_finish(means: dict, layer_of: dict, kind_of: dict, n_layers: int, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    counts.dataset_summary(means, layer_of, kind_of, n_layers, 2e-5, [0.5, 0.9, 0.99])
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="smollm2-135m", help="a published config (lit_activation.models.architectures)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    means, layer_of, kind_of, n_layers = random_means(args.shape, args.device)
    timed_finish(means, layer_of, kind_of, n_layers, args.device)  # warm-up: allocator, kernels
    table, search = [], []
    for _ in range(args.repeats):
        table.append(timed_finish(means, layer_of, kind_of, n_layers, args.device))
        with mock.patch.object(counts.EdgeTable, "of", staticmethod(lambda edges: None)):  # the binary search instead
            search.append(timed_finish(means, layer_of, kind_of, n_layers, args.device))
    report = {
        "machine": describe(args.device),
        "shape": args.shape,
        "means": sum(m.numel() for m in means.values()),
        "finish_s_edge_table": statistics.median(table),
        "finish_s_bucketize": statistics.median(search),
        "bucketize_over_table": statistics.median(s / t for s, t in zip(search, table, strict=True)),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
