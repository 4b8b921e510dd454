"""Speed and memory of the batched Taylor scorer vs the paper's way, in the same run.

    python benchmarks/scoring.py [--model smollm2-135m] [--samples 16] [--tokens 128] [--batch 4 8]

The paper's way: batch size 1, every parameter requires grad, a full backward per sample, and per
module |w * grad| copied out. Ours: one forward/backward per batch, per-sample gradients in hooks.
Both fold the scores into the same fp32 sum (what Finding 1 needs), so results must agree.
Each method runs in its own process, so each peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import torch

from lit_activation.models import linear_modules, load_causal_lm
from lit_activation.scores import stream_taylor_scores


def inputs(tokenizer, samples: int, tokens: int) -> torch.Tensor:
    from lit_activation.data.samples import sample_inputs

    return torch.tensor(sample_inputs("wiki", samples, tokenizer, seed=0, window=tokens))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def run_batched(model, ids: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    modules = linear_modules(model)
    sums = {n: torch.zeros(m.weight.shape) for n, m in modules.items()}
    for start in range(0, ids.shape[0], batch):
        chunk = ids[start : start + batch]

        def consume(name: str, scores: torch.Tensor) -> None:
            sums[name] += scores.sum(0)

        stream_taylor_scores(model, chunk, torch.ones_like(chunk), consume, modules=modules)
    return sums


def run_paper(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    modules = linear_modules(model)
    sums = {n: torch.zeros(m.weight.shape) for n, m in modules.items()}
    model.requires_grad_(True)
    for row in ids:
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=row[None]).logits[0, -1]
        logits[logits.argmax()].backward()
        for name, m in modules.items():
            sums[name] += (m.weight * m.weight.grad).abs().detach().clone()  # the paper deep-copied
    model.requires_grad_(False)
    return sums


def worker(method: str, batch: int, args: argparse.Namespace, queue: mp.Queue) -> None:
    torch.manual_seed(0)
    model, tokenizer = load_causal_lm(args.model)
    ids = inputs(tokenizer, args.samples, args.tokens)
    base = peak_rss_gb()
    run = (lambda x: run_batched(model, x, batch)) if batch else (lambda x: run_paper(model, x))
    run(ids[:2])  # warm-up
    start = time.perf_counter()
    sums = run(ids)
    seconds = time.perf_counter() - start
    torch.save(sums, f"{args.scratch}/{method}.pt")
    queue.put({"seconds": seconds, "samples_per_s": args.samples / seconds, "rss_after_load_gb": base, "peak_rss_gb": peak_rss_gb()})


def matmul_flops() -> float:
    """The machine's measured fp32 matmul FLOP/s (2048² × 2048, best of 5)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = min(_time(lambda: a @ b) for _ in range(5))
    return 2 * 2048**3 / best


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_sample(model, tokens: int) -> float:
    """Matmul FLOPs of one sample: forward, input-gradients and per-sample weight gradients (3 × 2·P·T),
    plus attention scores/values (forward and backward), plus the lm_head at one position."""
    params = sum(m.weight.numel() for m in linear_modules(model).values())
    cfg = model.config
    attention = 4 * tokens * tokens * cfg.hidden_size * cfg.num_hidden_layers  # QKᵀ and AV, forward
    head = 2 * cfg.hidden_size * cfg.vocab_size
    return 3 * 2 * params * tokens + 3 * attention + 3 * head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 8], help="batch sizes of the batched scorer")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    import tempfile

    args.scratch = tempfile.mkdtemp()
    ctx = mp.get_context("spawn")
    results = {}
    for method, batch in [("paper", 0)] + [(f"batched{b}", b) for b in args.batch]:
        queue = ctx.Queue()
        proc = ctx.Process(target=worker, args=(method, batch, args, queue))
        proc.start()
        results[method] = queue.get()
        proc.join()
    sums = {m: torch.load(f"{args.scratch}/{m}.pt", weights_only=True) for m in results}
    paper = sums["paper"]
    model, _ = load_causal_lm(args.model)
    modules = linear_modules(model)
    params = sum(m.weight.numel() for m in modules.values())
    peak = matmul_flops()
    report = {
        "model": args.model, "samples": args.samples, "tokens": args.tokens, "threads": torch.get_num_threads(),
        "accumulator_gb": params * 4 / 2**30, "matmul_peak_gflops": peak / 1e9, "paper": results.pop("paper"),
    }
    for method, r in results.items():
        batch = int(method.removeprefix("batched"))
        achieved = flops_per_sample(model, args.tokens) * r["samples_per_s"]
        report[method] = {
            **r,
            "speedup_vs_paper": r["samples_per_s"] / report["paper"]["samples_per_s"],
            "max_rel_difference": max(float((sums[method][n] - paper[n]).abs().max() / paper[n].abs().max()) for n in paper),
            "one_module_scores_gb": batch * max(m.weight.numel() for m in modules.values()) * 4 / 2**30,
            "fraction_of_matmul_peak": achieved / peak,
        }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
