"""Time and peak memory of pruning with each metric and of perplexity evaluation, in the same run.

    python benchmarks/pruning.py [--model smollm2-135m] [--samples 32] [--seqlen 256] [--eval-chunks 16]
    python benchmarks/pruning.py --metrics Wanda SparseGPT

Pruning: calibration capture + per-block norms (SparseGPT: H = 2XXᵀ) + prune + re-run (uniform 50 %),
with each metric (Taylor and GBLM add their scoring pass over the calibration batch on the dense
model; SparseGPT its inverse factors and OBS updates). Each metric against Wanda with the same
calibration: `over_wanda` (time) and `peak_over_wanda` (peak RSS beyond the loaded model). Evaluation:
dense forward over non-overlapping seqlen chunks, tokens/s. Baseline in the same run: one plain
forward of the calibration batch (what a pruning pass must cost at least twice: norms + re-run).
Each phase runs in its own process so each peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import torch

from lit_activation.data.perplexity import chunk_stream
from lit_activation.data.samples import calibration_ids, evaluation_stream
from lit_activation.models.layers import decoder_layers
from lit_activation.models.loading import load_causal_lm
from lit_activation.pruning import metrics
from lit_activation.pruning.prune import prune_sequential


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def phase(name: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    model, tokenizer = load_causal_lm(args.model)
    base = peak_rss_gb()
    calib = calibration_ids("news", tokenizer, args.samples, args.seqlen, 0)
    chunks = chunk_stream(evaluation_stream("wiki", tokenizer), args.seqlen, args.eval_chunks)
    start = time.perf_counter()
    with torch.no_grad():  # the Taylor and GBLM passes turn gradients on for themselves
        if name == "forward":
            for batch in calib.split(args.batch):
                model(input_ids=batch, use_cache=False)
            tokens = calib.numel()
        elif name.startswith("prune"):
            metric = getattr(metrics, name.split(":")[1])()
            prune_sequential(model, calib, [0.5] * len(decoder_layers(model)[1]), metric=metric, batch_size=args.batch)
            tokens = calib.numel()
        else:
            for batch in chunks.split(args.batch):
                model(input_ids=batch, use_cache=False)
            tokens = chunks.numel()
    seconds = time.perf_counter() - start
    queue.put({"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds, "rss_after_load_gb": base, "peak_rss_gb": peak_rss_gb()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--eval-chunks", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--metrics", nargs="+", default=["Wanda", "SparseGPT", "Taylor", "GBLM"], help="pruning metrics (lit_activation.pruning.metrics)")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    report = {"model": args.model, "calibration": f"news {args.samples}x{args.seqlen}", "threads": torch.get_num_threads()}
    for name in ("forward", *(f"prune:{m}" for m in args.metrics), "evaluate"):
        queue = ctx.Queue()
        proc = ctx.Process(target=phase, args=(name, args, queue))
        proc.start()
        report[name] = queue.get()
        proc.join()
    baseline = report[f"prune:{'Wanda' if 'Wanda' in args.metrics else args.metrics[0]}"]
    for m in args.metrics:
        phase_report = report[f"prune:{m}"]
        phase_report["over_forward"] = phase_report["seconds"] / report["forward"]["seconds"]
        phase_report["over_wanda"] = phase_report["seconds"] / baseline["seconds"]
        phase_report["peak_over_wanda"] = beyond_load(phase_report) / beyond_load(baseline)
    print(json.dumps(report, indent=2))


def beyond_load(phase_report: dict) -> float:
    """Peak RSS of a phase beyond the loaded model (GB): what the phase's own work added."""
    return phase_report["peak_rss_gb"] - phase_report["rss_after_load_gb"]


if __name__ == "__main__":
    main()
