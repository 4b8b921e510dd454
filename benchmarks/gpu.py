"""The GPU measurements in one run, one table: the engine against the paper's loop, on a GPU.

    python benchmarks/gpu.py --make-model /tmp/llama7b          # on the GPU machine (H100/H200)
    python benchmarks/gpu.py --toy                              # a dry run on a CPU, toy shapes, seconds

Rows (per sample, batch × tokens, the Finding 1 reducer ScoreSum, all in this process):
- the paper's way in bf16 and in fp32: batch 1, full backward with the weights requiring grad,
  w·grad copied out per scored parameter;
- the engine: exact fp32 with plain products (`matmul: ieee`), with split-bf16 products
  (`matmul: split`), each also through the fused Triton kernel (`fused: true`, where triton runs),
  split with the fused linear kernel (`fused_linear: true`) and with both, and the bf16 fast
  mode; a tile sweep of the split engine and a sweep of the kernel's launch configurations;
- single linears x·Wᵀ at the model's MLP widths in TFLOP/s: cuBLAS bf16, fp32 and split (with
  and without chains), and the fused linear kernel at each `--linear-configs` launch (the
  launches benchmarks/compile_check.py compiles without spills here);
- the matmul bound: the 6·P·T FLOPs at the model's shapes in fp32, timed alone;
- accuracy: single products at the model's widths against fp64 (plain fp32, split, split in one
  chain: the ratios benchmarks/tensor_cores.py predicts; the fused linear kernel); a 4-layer model at the same widths, the
  worst max-normalised error of each exact mode (and of split in one chain) against an fp64
  per-sample loop, Finding 1 layer counts of split against ieee, and the fused kernel's Finding 1
  sums against the fp64 loop's; a sweep of the split products' chain lengths (time);
- the CLI: `lit-activation predict` with configs/counts_embedded.yaml (and similarity_embedded.yaml)
  on the model directory, wall time and the predict loop (benchmarks/timing.py) against the
  engine's time for the same batches, and the memory plan's prediction against torch's peak;
- the verdicts (benchmarks/gpu_targets.py): the engine's checks met or not, and whether each Triton
  kernel earned a default, printed after the CLI rows (before the sweeps).

`--make-model DIR` writes a random bf16 model of `--shape` (a published config, e.g. llama-2-7b)
with the embedded default's tokenizer (from the converted cache) or, for --toy, the tiny one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
from gpu_targets import render, setup_notes, verdicts
from machine import describe, sync
from scoring import bound_seconds, run_batched, run_paper
from tensor_cores import errors
from timing import cli_run

from lit_activation.analyses.counts import layer_counts
from lit_activation.engine import EngineSettings, kernels, linear_kernel, split, stream_taylor_scores
from lit_activation.engine.products import SplitProducts, pinned_matmul_precision, split_works_on
from lit_activation.models.architectures import model_config
from lit_activation.models.layers import layer_map, linear_modules
from lit_activation.models.loading import cache_dir

FUSED_FIELDS = ("BLOCK_R", "BLOCK_C", "BLOCK_K", "NUM_WARPS", "NUM_STAGES", "GROUP_R")
LINEAR_FIELDS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "NUM_WARPS", "NUM_STAGES", "GROUP_M")
# the launches timed besides each kernel's default (benchmarks/compile_check.py compiles them all here first)
# (with split products through TMA, as at 7B widths and 128 positions (one chain), none spills
# registers on sm_90; chained inputs spill at 128 × 128; the linear kernel's default comes first)
FUSED_CONFIGS = [
    (128, 128, 32, 8, 3, 8), (128, 128, 64, 8, 3, 8), (64, 64, 32, 4, 3, 8), (128, 64, 32, 8, 3, 8), (64, 128, 64, 8, 3, 8), (64, 128, 32, 8, 3, 1),
    (64, 128, 32, 8, 4, 8),
]
LINEAR_CONFIGS = [
    (128, 128, 32, 8, 3, 8), (128, 128, 64, 8, 3, 8), (128, 128, 32, 8, 4, 8), (128, 128, 32, 8, 3, 1), (64, 128, 32, 8, 3, 8), (128, 64, 32, 8, 3, 8),
    (64, 64, 32, 4, 3, 8),
]


def launch_config(fields: tuple[str, ...]) -> Callable[[str], tuple[int, ...]]:
    """The argparse type of one kernel launch: comma-separated integers, one per field."""

    def parse(text: str) -> tuple[int, ...]:
        values = tuple(int(v) for v in text.split(","))
        if len(values) != len(fields):
            raise argparse.ArgumentTypeError(f"{text!r}: give {','.join(fields)}")
        return values

    return parse


def launch_label(config: tuple[int, ...]) -> str:
    """A launch (blocks, warps, stages, group) as the tables name it."""
    return "blocks {}×{}×{}, {} warps, {} stages, groups of {}".format(*config)


def one_line(error: Exception, width: int = 160) -> str:
    """An error as one table-friendly line: its type and the start of its first line."""
    text = str(error)
    return f"{type(error).__name__}: {text.splitlines()[0][:width] if text else ''}"


def make_model(directory: Path, shape: str, layers: int | None, toy: bool) -> None:
    """A random bf16 model of a published shape (or the tiny one) with a tokenizer, saved to `directory`."""
    from transformers import AutoModelForCausalLM

    from lit_activation.models.tiny import tiny_config, tiny_tokenizer

    config = tiny_config("llama", 2, 64) if toy else model_config(shape)
    if layers:
        config.num_hidden_layers = layers
    if not toy:
        embedded = cache_dir() / "smollm2-135m"
        config.vocab_size = 49152  # the embedded tokenizer's vocabulary
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory)
    if toy:
        tiny_tokenizer().save_pretrained(directory)
    else:
        for file in embedded.glob("tokenizer*.json"):
            (directory / file.name).write_bytes(file.read_bytes())
        for file in ("special_tokens_map.json",):
            if (embedded / file).is_file():
                (directory / file).write_bytes((embedded / file).read_bytes())


def load(directory: Path, dtype: torch.dtype, device: str):  # noqa: ANN201 - a PreTrainedModel
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device).eval().requires_grad_(False)


def timed(run, device: str, repeats: int = 2) -> float:  # noqa: ANN001
    """Best wall time of `run()` after one warm-up call."""
    run()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        run()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def accuracy(directory: Path, device: str, tokens: int, samples: int) -> dict:
    """Worst max-normalised error of each exact mode against an fp64 per-sample loop; counts agreement."""
    model = load(directory, torch.bfloat16, device)
    ids = torch.randint(0, model.config.vocab_size, (samples, tokens), generator=torch.Generator().manual_seed(1)).to(device)
    twin = load(directory, torch.bfloat16, device).double()
    modules = linear_modules(twin)
    reference = []
    twin.requires_grad_(True)
    for row in ids:
        twin.zero_grad(set_to_none=True)
        logits = twin(input_ids=row[None]).logits[0, -1]
        logits[logits.argmax()].backward()
        reference.append({n: (m.weight * m.weight.grad).abs().detach() for n, m in modules.items()})
    del twin
    out: dict = {}
    means = {}
    modes = {"ieee": (EngineSettings(matmul="ieee"), split.CHAIN_SCALE), "split": (EngineSettings(matmul="split"), split.CHAIN_SCALE),
             "split_one_chain": (EngineSettings(matmul="split"), 0)}
    if kernels.available(torch.device(device)):
        modes["split_fused_linear"] = (EngineSettings(matmul="split", fused_linear=True), split.CHAIN_SCALE)
    for matmul, (settings, chains) in modes.items():
        got: dict[str, torch.Tensor] = {}

        def keep(tile, got=got) -> None:  # noqa: ANN001
            got.setdefault(tile.name, torch.zeros((samples, *linear_modules(model)[tile.name].weight.shape), device=device))[:, tile.rows] = tile.scores()

        with mock.patch.object(split, "CHAIN_SCALE", chains):  # one chain over all of K: the layout without chains
            stream_taylor_scores(model, ids, torch.ones_like(ids), keep, settings)
        worst = max(float((got[n][r].double() - ref[n]).abs().max() / ref[n].abs().max()) for r, ref in enumerate(reference) for n in ref)
        out[f"max_normalised_error_{matmul}"] = worst
        means[matmul] = {n: g.mean(0) for n, g in got.items()}
        got.clear()
    out["max_normalised_error_split_over_ieee"] = out["max_normalised_error_split"] / out["max_normalised_error_ieee"]
    layer_of, _, n_layers = layer_map(model)
    pooled = torch.cat([m.flatten() for m in means["ieee"].values()])
    for q in (0.5, 0.9):
        threshold = float(pooled.float().quantile(q) if pooled.numel() < 2**24 else pooled[torch.randperm(pooled.numel())[: 2**24]].quantile(q))
        a, b = (layer_counts(means[m], layer_of, n_layers, threshold).double() for m in ("ieee", "split"))
        out[f"counts_max_rel_diff_q{q}"] = float(((a - b).abs() / a.clamp_min(1)).max())
    if kernels.available(torch.device(device)):  # Finding 1's sums through the fused kernel, against fp64
        exact = {n: sum(ref[n] for ref in reference) for n in reference[0]}
        for matmul in ("ieee", "split"):
            sums = run_batched(model, ids, samples, EngineSettings(matmul=matmul, fused=True)).sums
            out[f"fused_sums_max_normalised_error_{matmul}"] = max(float((sums[n].double() - e).abs().max() / e.abs().max()) for n, e in exact.items())
    return out


def product_errors(device: str, widths: tuple[int, ...] = (4096, 11008), positions: int = 128, rows: int = 1024) -> dict:
    """Median relative error against fp64 of single products at the model's widths, on the device:
    plain fp32 (cuBLAS on CUDA cores), split with chains (the default) and, for x·Wᵀ, split with one
    chain over all of K (G_s at 128 positions is one chain either way) and the fused linear kernel. benchmarks/tensor_cores.py
    predicts these ratios from a model of the tensor cores."""
    g = torch.Generator().manual_seed(3)
    out: dict = {}
    median = lambda y, exact: errors(y.cpu(), exact)[0]  # noqa: E731 - the median relative error

    with pinned_matmul_precision():
        for k in widths:
            x, w = torch.randn(rows, k, generator=g), (torch.randn(512, k, generator=g) * 0.02).bfloat16()
            exact = x.double() @ w.double().t()
            xd, wd = x.to(device), w.to(device)
            row = {"ieee": median(xd @ wd.float().t(), exact), "split": median(split.split_linear(xd, wd), exact)}
            with mock.patch.object(split, "CHAIN_SCALE", 0):
                row["split_one_chain"] = median(split.split_linear(xd, wd), exact)
            if kernels.available(xd.device):  # the fused linear kernel: parts split and chains promoted in registers
                row["fused_split"] = median(linear_kernel.linear(xd, wd), exact)
            out[f"x·Wᵀ K={k}"] = row
        delta, x = torch.randn(8, 256, positions, generator=g), torch.randn(8, positions, 512, generator=g)
        exact = delta.double() @ x.double()
        products = SplitProducts()
        left, right = products.gradient_operands(delta.to(device), x.to(device))
        grad = products.gradient(left, right, torch.empty(8, 256, 512, device=device), positions)
        out[f"G_s T={positions}"] = {"ieee": median(delta.to(device) @ x.to(device), exact), "split": median(grad, exact)}
    for row in out.values():
        row.update({f"{key}_over_ieee": value / row["ieee"] for key, value in list(row.items()) if key != "ieee"})
    print(json.dumps({"product_median_errors": out}, indent=2), flush=True)
    return out


def linear_speeds(device: str, configs: list[tuple[int, ...]], shapes: tuple[tuple[int, int], ...] = ((4096, 11008), (11008, 4096)), rows: int = 1024) -> dict:
    """TFLOP/s of one scored linear's x·Wᵀ at the model's widths (bf16 weight, `rows` tokens): cuBLAS
    in bf16 (not exact: the tensor cores' ceiling), in fp32 from the upcast weight, split from bf16
    parts (engine/split.py), and the fused linear kernel at each launch in `configs`.
    What the chains cost and whether the kernel beats cuBLAS's split, below any end-to-end row.
    `shapes`: (K, N) pairs, Llama-2-7B's MLP widths by default."""
    g = torch.Generator().manual_seed(4)
    out: dict = {}
    for k, n in shapes:
        x, w = torch.randn(rows, k, generator=g).to(device), (torch.randn(n, k, generator=g) * 0.02).bfloat16().to(device)
        flops = 2 * rows * n * k
        ways: dict[str, Callable[[], object]] = {
            "cuBLAS bf16": lambda x=x, w=w: x.bfloat16() @ w.t(),
            "cuBLAS fp32 (ieee)": lambda x=x, w=w: x @ w.float().t(),
            "split, cuBLAS": lambda x=x, w=w: split.split_linear(x, w),
        }
        row = {}
        with pinned_matmul_precision():
            for label, run in ways.items():
                row[label] = _tflops(label, run, device, flops)
            with mock.patch.object(split, "CHAIN_SCALE", 0):
                row["split, one chain, cuBLAS"] = _tflops("split, one chain", lambda x=x, w=w: split.split_linear(x, w), device, flops)  # what chains cost
            if kernels.available(torch.device(device)):
                for config in configs:
                    with mock.patch.multiple(linear_kernel, **dict(zip(LINEAR_FIELDS, config, strict=True))):
                        label = f"fused split, {launch_label(config)}"
                        row[label] = _tflops(label, lambda x=x, w=w: linear_kernel.linear(x, w), device, flops)
                with mock.patch.object(kernels, "TMA", False):  # what TMA loads bring, at the default launch
                    row["fused split, default launch, pointer loads"] = _tflops("pointer loads", lambda x=x, w=w: linear_kernel.linear(x, w), device, flops)
        out[f"x·Wᵀ {rows}×{k} → {n}"] = row
        print(json.dumps({f"linear TFLOP/s, {rows}×{k} → {n}": row}, indent=2), flush=True)
    return out


def _tflops(label: str, run: Callable[[], object], device: str, flops: int) -> float:
    """TFLOP/s of `run` (best of a few), or NaN where it fails (a launch the GPU cannot hold)."""
    try:
        return flops / timed(run, device, 3) / 1e12
    except Exception as error:  # noqa: BLE001 - one session on the GPU: the other figures still count
        print(f"  {label}: failed, {one_line(error)}", flush=True)
        return math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None, help="a model directory (default: the one --make-model writes)")
    parser.add_argument("--make-model", type=Path, default=None, help="write a random bf16 model of --shape here first")
    parser.add_argument("--shape", default="llama-2-7b")
    parser.add_argument("--toy", action="store_true", help="CPU dry run: tiny shapes, few samples")
    parser.add_argument("--samples", type=int, default=16, help="samples timed per row")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--tiles", type=float, nargs="*", default=[64, 256, 1024, 4096], help="tile budgets (MB) of the sweep")
    parser.add_argument("--fused-configs", type=launch_config(FUSED_FIELDS), nargs="*", default=FUSED_CONFIGS,
                        help="fused kernel launches to time besides the default one (the 'split + fused kernel' row): "
                        + ",".join(FUSED_FIELDS) + " each")
    parser.add_argument("--linear-configs", type=launch_config(LINEAR_FIELDS), nargs="*", default=LINEAR_CONFIGS,
                        help="fused linear kernel launches whose x·Wᵀ speed is timed: " + ",".join(LINEAR_FIELDS) + " each")
    parser.add_argument("--chain-scales", type=int, nargs="*", default=[0, 32, 64], help="split.CHAIN_SCALE values timed besides the default "
                        "(chains of the power of two ≤ scale·√K; 0: one chain)")
    parser.add_argument("--cli-samples", type=int, default=80, help="num_samples per dataset of the CLI runs (4 datasets)")
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = "cpu" if args.toy or not torch.cuda.is_available() else "cuda"
    if args.toy:
        args.samples, args.batch, args.tokens, args.tiles, args.cli_samples = 4, 2, 16, [1, 4], 2
        args.fused_configs = [(16, 16, 16, 4, 3, 2)]
        args.linear_configs = [(16, 16, 16, 4, 3, 2)]
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "lit_activation_gpu_bench"
    directory = args.model_dir or args.make_model or work / "model"
    if args.make_model or not (directory / "config.json").is_file():
        make_model(directory, args.shape, None, args.toy)
    small = work / "model_4_layers"
    if not (small / "config.json").is_file():
        make_model(small, args.shape, 4 if not args.toy else None, args.toy)

    report: dict = {"machine": describe(device), "date": time.strftime("%Y-%m-%d"), "shape": "toy" if args.toy else args.shape}
    report["setup"] = {"shape": report["shape"], "batch": args.batch, "tokens": args.tokens, "cli_samples": None if args.skip_cli else args.cli_samples}
    import lightning
    import transformers

    report["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "lightning": lightning.__version__}
    print(f"{report['machine']} {report['versions']} {report['date']}\n")
    print(f"| what ({args.batch} × {args.tokens} tokens) | s / sample | speed vs the paper's bf16 loop |\n|---|---|---|")
    table = Table(report, args.json)
    model = load(directory, torch.bfloat16, device)
    ids = torch.randint(0, model.config.vocab_size, (args.samples, args.tokens), generator=torch.Generator().manual_seed(0)).to(device)
    per = lambda seconds: seconds / args.samples  # noqa: E731
    table.paper16 = per(timed(lambda: run_paper(model, ids), device, 1))
    table.add("paper's way, bf16 weights and grads", table.paper16)
    settings = {"engine, exact fp32, matmul ieee": EngineSettings(matmul="ieee"), "engine, exact fp32, matmul split": EngineSettings(matmul="split"),
                "engine, bf16 fast mode": EngineSettings(compute_dtype="bfloat16")}
    if kernels.available(torch.device(device)):  # the Triton kernels: off by default until these rows say they pay
        settings["engine, exact fp32, split + fused kernel"] = EngineSettings(matmul="split", fused=True)
        settings["engine, exact fp32, ieee + fused kernel"] = EngineSettings(matmul="ieee", fused=True)
        settings["engine, exact fp32, split + fused linears"] = EngineSettings(matmul="split", fused_linear=True)
        settings["engine, exact fp32, split + both kernels"] = EngineSettings(matmul="split", fused=True, fused_linear=True)
    # False: the "split" rows ran plain fp32 products (the log has the probe's warning); a CPU emulates them
    report["split_products_run"] = device == "cpu" or split_works_on(torch.device(device))
    engine_seconds = {}
    for label, s in settings.items():
        engine_seconds[label] = table.measure(label, lambda s=s: per(timed(lambda: run_batched(model, ids, args.batch, s), device)))
    table.add("fp32 matmul bound (6·P·T, CUDA cores)", bound_seconds(model, args.batch, args.tokens, torch.float32, device) / args.batch)
    model = None  # the bf16 copy goes before the fp32 one loads
    fp32 = load(directory, torch.float32, device)
    table.add("paper's way, fp32", per(timed(lambda: run_paper(fp32, ids), device, 1)))
    fp32 = None
    if device == "cuda":
        torch.cuda.empty_cache()
    report["product_errors"] = product_errors(device, rows=64 if args.toy else 1024)
    report["linear_tflops"] = linear_speeds(device, args.linear_configs, *(((64, 96), (96, 64)), 16) if args.toy else ())
    report["accuracy_4_layers"] = accuracy(small, device, args.tokens, min(4, args.samples))
    table.save()
    if not args.skip_cli:
        extra = ["--data.init_args.num_samples", str(args.cli_samples), "--data.init_args.batch_size", str(args.batch)]
        counts = cli_run("counts_embedded.yaml", str(directory), extra, work / "runs")
        engine_same = engine_seconds["engine, exact fp32, matmul split" if device == "cuda" else "engine, exact fp32, matmul ieee"] * 4 * args.cli_samples
        counts["predict_loop_over_engine"] = counts["predict_loop_s"] / engine_same
        report["cli_counts"] = counts
        table.save()
        report["cli_similarity"] = cli_run("similarity_embedded.yaml", str(directory), ["--data.init_args.num_samples", str(args.cli_samples)], work / "runs")
        table.save()
    print(json.dumps({k: v for k, v in report.items() if k not in ("rows", "machine")}, indent=2), flush=True)
    print(render(verdicts(report), setup_notes(report, None, None)), flush=True)  # finish and overhead: gpu_targets.py
    # the sweeps last: a run cut short by its time limit has the figures above already
    model = load(directory, torch.bfloat16, device)
    if kernels.available(torch.device(device)):  # the fused kernel's launch configurations, a first tuning sweep
        plain = run_batched(model, ids, args.batch, EngineSettings(matmul="split")).sums  # what every launch must give
        report["fused_sweep_max_normalised_difference_from_plain_split"] = differences = {}
        for config in args.fused_configs:
            names = dict(zip(FUSED_FIELDS, config, strict=True))
            label = f"engine, split + fused kernel, {launch_label(config)}"
            last: list = []  # the last timed run's sums, checked below: a fast row with wrong numbers would mislead

            def run_fused(last: list = last) -> None:
                last.clear()  # the previous run's sums go first (parameter-sized)
                last.append(run_batched(model, ids, args.batch, EngineSettings(matmul="split", fused=True)))

            with mock.patch.multiple(kernels, **names):
                seconds = table.measure(label, lambda run=run_fused: per(timed(run, device, 1)))
            if last:
                differences[label] = max(float((last[-1].sums[n] - p).abs().max() / p.abs().max()) for n, p in plain.items())
                print(f"  {label}: max normalised difference from plain split {differences[label]:.1e} ({seconds:.4f} s)", flush=True)
        table.save()
    for tile in args.tiles:
        tiled = EngineSettings(matmul="split", tile_mb=tile)
        table.measure(f"engine, split, tile {tile:g} MB", lambda tiled=tiled: per(timed(lambda: run_batched(model, ids, args.batch, tiled), device, 1)))
    for scale in args.chain_scales:  # what the chains cost (each adds one pass over a product's output)
        with mock.patch.object(split, "CHAIN_SCALE", scale):
            label = f"engine, split, chains of {split.chain_length(4096)} at K 4096" if scale else "engine, split, one chain over K"
            table.measure(label, lambda: per(timed(lambda: run_batched(model, ids, args.batch, EngineSettings(matmul="split")), device, 1)))
    table.save()


class Table:
    """The table's rows, each printed as soon as it is measured and the report saved to `path` with
    it, so that a session cut short by its time limit keeps every figure it reached."""

    def __init__(self, report: dict, path: Path | None) -> None:
        self.report, self.path, self.paper16 = report, path, math.nan
        report["rows"] = []

    def add(self, what: str, seconds: float) -> float:
        ratio = self.paper16 / seconds if seconds == seconds else math.nan
        self.report["rows"].append({"what": what, "seconds_per_sample": seconds, "vs_paper_bf16": ratio})
        print(f"| {what} | {seconds:.4f} | {ratio:.2f}x |", flush=True)
        self.save()
        return seconds

    def measure(self, what: str, seconds: Callable[[], float]) -> float:
        """`add(what, seconds())`; a row that fails (a launch configuration the GPU cannot hold, a
        kernel Triton cannot compile there) becomes a row naming the error, and the run goes on."""
        try:
            return self.add(what, seconds())
        except Exception as error:  # noqa: BLE001 - one session on the GPU: every other figure still counts
            return self.add(f"{what}: failed, {one_line(error)}", math.nan)

    def save(self) -> None:
        if self.path:
            self.path.write_text(json.dumps(self.report, indent=2))

if __name__ == "__main__":
    main()
