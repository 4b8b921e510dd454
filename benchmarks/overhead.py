"""How close a `lit-activation predict` run comes to its engine: the predict loop of a Finding 1 run
against the engine alone on the very same batches, in one session.

    python benchmarks/overhead.py                                           # embedded default, CPU
    python benchmarks/overhead.py --model DIR --dtype bfloat16 --samples 80 --batch 8   # on a GPU

The run: configs/counts_embedded.yaml through the CLI (4 datasets × `--samples`), timed by
benchmarks/timing.py's callback from the first batch to the last dataset's finish. The engine: the
same data module's batches, formed beforehand, into the same reducer (ScoreSum) with one
`begin`/`end` per batch; no Lightning, no data loading, no dataset finish. ratio = predict loop /
engine: 1.0 is a run at its engine's speed (the GPU report checks ≤ 1.15, benchmarks/gpu_targets.py). `--repeats N` alternates N
runs with N engine timings (the machine's speed drifts; one pair can be 10 % off) and reports the
median ratio of the pairs.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import describe, sync
from scoring import score_batches
from timing import ROOT, cli_run

from lit_activation.cli import build_cli
from lit_activation.models.loading import load_causal_lm


def engine_seconds(args: argparse.Namespace, overrides: list[str]) -> float:
    """The engine's time for the CLI run's own batches (formed first, moved to the device first)."""
    cli = build_cli(["--config", str(ROOT / "configs" / "counts_embedded.yaml"), *overrides], run=False)
    datamodule = cli.datamodule
    datamodule.setup("predict")
    device = torch.device(args.device)
    formed = [(batch["input_ids"].to(device), batch["attention_mask"].to(device)) for batch in datamodule.predict_dataloader()]
    model, _ = load_causal_lm(args.model, args.dtype, device=args.device)
    score_batches(model, formed[:1], cli.model.engine)  # warm-up (the CLI run's first batch pays it inside its loop)
    sync(args.device)
    start = time.perf_counter()
    score_batches(model, formed, cli.model.engine)
    sync(args.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="float32", help="weights' stored dtype")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=16, help="num_samples per dataset (4 datasets)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of (run, engine), alternating; medians reported")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    overrides = ["--model.model", args.model, "--model.dtype", args.dtype, "--data.init_args.num_samples", str(args.samples),
                 "--data.init_args.batch_size", str(args.batch), "--trainer.accelerator", "gpu" if args.device == "cuda" else "cpu"]
    runs, engines = [], []
    with tempfile.TemporaryDirectory() as out:
        for repeat in range(args.repeats):
            runs.append(cli_run("counts_embedded.yaml", args.model, overrides[4:], Path(out) / str(repeat), args.dtype))
            engines.append(engine_seconds(args, [*overrides, "--trainer.logger.init_args.save_dir", out]))
            gc.collect()  # its model and batches go before the next run, so that every run plans and runs alike
            if args.device == "cuda":
                torch.cuda.empty_cache()
    ratios = [run["predict_loop_s"] / seconds for run, seconds in zip(runs, engines, strict=True)]
    report = {"machine": describe(args.device), "model": args.model, "samples": 4 * args.samples, "batch": args.batch, **runs[0],
              "predict_loop_s": statistics.median(run["predict_loop_s"] for run in runs),
              "wall_s": statistics.median(run["wall_s"] for run in runs), "engine_s": statistics.median(engines),
              "predict_loop_over_engine": statistics.median(ratios), "pairs": [round(r, 3) for r in ratios]}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
