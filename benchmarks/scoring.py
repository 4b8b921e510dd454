"""Speed and memory of the Taylor scorer against the paper's way and against the matmul bound.

    python benchmarks/scoring.py                                   # embedded default, CPU
    python benchmarks/scoring.py --tile-mb 1 4 16 64 256           # choose the tile budget
    python benchmarks/scoring.py --random llama-2-7b --device cuda --dtype bfloat16 --tokens 512 --batch 4

The paper's way, as its code did it: batch 1, a plain forward that computes the logits at every
position, a backward of the last position's max logit with every parameter requiring grad, and
w·grad copied out per scored parameter (folded into the same fp32 sums Finding 1 needs).
Ours: stream_taylor_scores into ScoreSum (the real counts reducer).

The bound: the three matmuls the method cannot avoid, timed alone on the same shapes in the same
process: per scored module the forward x Wᵀ, the input gradient δ W and the per-sample weight
gradients δ_sᵀ x_s (6·P·T FLOPs per sample). fraction = bound time / measured time per batch.
Each method runs in its own process so each peak memory is its own. Figures depend on the machine:
its CPU, threads and measured matmul rate are printed with them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from queue import Empty

import torch
from machine import describe, peak_memory_gb, sync

from lit_activation.engine import EngineSettings, ScoreSum, stream_taylor_scores
from lit_activation.models.layers import linear_modules, weight_out_in
from lit_activation.models.loading import load_causal_lm, resolve_dtype


def build(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model (loaded, or random from a published config) and the input ids (samples, tokens)."""
    if args.random:
        from transformers import AutoModelForCausalLM

        from lit_activation.models.architectures import model_config

        torch.manual_seed(0)
        with torch.device(args.device):
            model = AutoModelForCausalLM.from_config(model_config(args.random), dtype=resolve_dtype(args.dtype))
        model.eval().requires_grad_(False)
        vocab = model.config.vocab_size
        ids = torch.randint(0, vocab, (args.samples, args.tokens), generator=torch.Generator().manual_seed(0))
        return model, ids.to(args.device)
    model, tokenizer = load_causal_lm(args.model, args.dtype, device=args.device)
    from lit_activation.data.samples import sample_inputs

    return model, torch.tensor(sample_inputs("wiki", args.samples, tokenizer, seed=0, window=args.tokens), device=args.device)


def score_batches(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], settings: EngineSettings) -> ScoreSum:
    """The engine alone: each (input_ids, attention_mask) batch into the Finding 1 reducer."""
    modules = linear_modules(model)
    sums = ScoreSum(modules)
    for ids, mask in batches:
        sums.begin(ids.shape[0])
        stream_taylor_scores(model, ids, mask, sums.update, settings, modules)
        sums.end()
    return sums


def run_batched(model: torch.nn.Module, ids: torch.Tensor, batch: int, settings: EngineSettings) -> ScoreSum:
    """`score_batches` over `ids` cut into batches of `batch` unpadded rows."""
    chunks = (ids[start : start + batch] for start in range(0, ids.shape[0], batch))
    return score_batches(model, ((chunk, torch.ones_like(chunk)) for chunk in chunks), settings)


def run_paper(model: torch.nn.Module, ids: torch.Tensor) -> ScoreSum:
    modules = linear_modules(model)
    sums = ScoreSum(modules)
    model.requires_grad_(True)
    for row in ids:
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=row[None]).logits[0, -1]  # every position's logits were computed
        logits[logits.argmax()].backward()
        with torch.no_grad():  # the weights require grad here: keep the fold out of the graph
            for name, m in modules.items():
                sums.sums[name] += (m.weight * m.weight.grad).abs().float()  # the paper deep-copied w·grad
        sums.samples += 1
    model.requires_grad_(False)
    return sums


def bound_seconds(model: torch.nn.Module, batch: int, tokens: int, dtype: torch.dtype, device: str) -> float:
    """Time of the forward, input-gradient and per-sample weight-gradient matmuls of one batch."""
    shapes = Counter(tuple(weight_out_in(m).shape) for m in linear_modules(model).values())
    total = 0.0
    for (out, inp), count in shapes.items():
        x = torch.randn(batch * tokens, inp, device=device, dtype=dtype)
        d = torch.randn(batch * tokens, out, device=device, dtype=dtype)
        w = torch.randn(out, inp, device=device, dtype=dtype)
        d_t = d.view(batch, tokens, out).transpose(1, 2).contiguous()
        x_b = x.view(batch, tokens, inp)

        def three(x=x, d=d, w=w, d_t=d_t, x_b=x_b) -> None:  # noqa: ANN001 - bound now, not at call time
            x @ w.t()
            d @ w
            torch.bmm(d_t, x_b)

        three()
        best = float("inf")
        for _ in range(5):
            sync(device)
            start = time.perf_counter()
            three()
            sync(device)
            best = min(best, time.perf_counter() - start)
        total += count * best
    return total


def worker(method: str, batch: int, tile_mb: float | None, args: argparse.Namespace, queue: mp.Queue) -> None:
    torch.manual_seed(0)
    model, ids = build(args)
    compute = resolve_dtype(args.compute_dtype)
    settings = EngineSettings(compute_dtype=args.compute_dtype, matmul=args.matmul, tile_mb=tile_mb)
    # The bound is timed before and after the runs and the smaller kept: a conservative fraction.
    bound = bound_seconds(model, batch, args.tokens, compute, args.device) if method != "paper" else None
    run = (lambda x: run_paper(model, x)) if method == "paper" else (lambda x: run_batched(model, x, batch, settings))
    run(ids[: max(batch, 1)])  # warm-up
    times = []
    for _ in range(args.repeats):
        sync(args.device)
        start = time.perf_counter()
        sums = run(ids)
        sync(args.device)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    torch.save({n: s.cpu() for n, s in sums.sums.items()}, f"{args.scratch}/{method}.pt")
    result = {"seconds": seconds, "samples_per_s": args.samples / seconds, "peak_memory_gb": peak_memory_gb(args.device)}
    if method != "paper":
        per_batch = seconds / -(-args.samples // batch)
        bound = min(bound, bound_seconds(model, batch, args.tokens, compute, args.device))
        result["fraction_of_matmul_bound"] = bound / per_batch
        result["bound_seconds_per_sample"] = bound / batch
    queue.put(result)


def in_process(target, *args) -> dict:  # noqa: ANN001
    """Run target(*args, queue) in a fresh process (its own peak memory); fail if it dies."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            out = queue.get(timeout=5)
            break
        except Empty:
            if not proc.is_alive():
                raise RuntimeError(f"benchmark worker {args[0]!r} died with exit code {proc.exitcode} (out of memory?)") from None
    proc.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--random", default=None, help="build a random model from a published config instead (e.g. llama-2-7b)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="weights' stored dtype")
    parser.add_argument("--compute-dtype", default="float32")
    parser.add_argument("--matmul", default="auto", choices=["auto", "ieee", "split"], help="how fp32 products are formed (EngineSettings.matmul)")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 8], help="batch sizes of the batched scorer")
    parser.add_argument("--tile-mb", type=float, nargs="+", default=[None], help="tile budgets (several: a sweep at the first batch size)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (best is kept)")
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    args.scratch = tempfile.mkdtemp()
    report = {
        "machine": describe(args.device), "model": args.random or args.model, "dtype": args.dtype, "compute_dtype": args.compute_dtype,
        "samples": args.samples, "tokens": args.tokens,
    }
    runs = [(f"batched{b}", b, args.tile_mb[0]) for b in args.batch]
    runs += [(f"batched{args.batch[0]}_tile{t:g}MB", args.batch[0], t) for t in args.tile_mb[1:]]
    if not args.skip_paper:
        report["paper"] = in_process(worker, "paper", 0, None, args)
    for method, batch, tile in runs:
        report[method] = in_process(worker, method, batch, tile, args)
    if not args.skip_paper:
        paper = torch.load(f"{args.scratch}/paper.pt", weights_only=True)
        for method, _, _ in runs:
            ours = torch.load(f"{args.scratch}/{method}.pt", weights_only=True)
            r = report[method]
            r["speedup_vs_paper"] = r["samples_per_s"] / report["paper"]["samples_per_s"]
            # what a scorer running exactly at the matmul bound would gain over the paper's way
            r["ceiling_vs_paper"] = 1 / report["paper"]["samples_per_s"] / r["bound_seconds_per_sample"]
            r["max_rel_difference"] = max(float((ours[n] - paper[n]).abs().max() / paper[n].abs().max()) for n in paper)
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
