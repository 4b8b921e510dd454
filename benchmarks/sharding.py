"""Which sharded layout: rank-local rows (lit-activation's) or data-parallel scoring with a reduce-scatter.

    python benchmarks/sharding.py [--model smollm2-135m] [--batch 2] [--tokens 128] [--processes 2]

Both keep 1/N of the Finding 1 accumulator per rank (FSDP2 over N processes, gloo on CPU). Per batch:
- rows: every rank runs the same batch and forms the per-sample gradients of its own weight rows;
  nothing parameter-sized crosses ranks (time: `rows_pass`).
- data-parallel: every rank runs its own batch, forms the gradients of all rows, then the batch's
  parameter-sized sums are reduce-scattered (time: `full_pass` + `reduce_scatter`), N batches per step.
Printed: both times, the bytes moved, and the throughput of rows relative to data-parallel.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from machine import describe

from lit_activation.distributed.sharding import own_rows, shard_model
from lit_activation.engine import EngineSettings, ScoreSum, stream_taylor_scores
from lit_activation.models.layers import linear_modules
from lit_activation.models.loading import load_causal_lm


def best(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        fn()
        dist.barrier()
        times.append(time.perf_counter() - start)
    return min(times)


def worker(rank: int, args: argparse.Namespace, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(args.port))
    dist.init_process_group("gloo", rank=rank, world_size=args.processes)
    torch.set_num_threads(max(1, os.cpu_count() // args.processes))
    from torch.distributed.device_mesh import init_device_mesh

    model, _ = load_causal_lm(args.model)
    modules = linear_modules(model)
    mesh = init_device_mesh("cpu", (1, args.processes), mesh_dim_names=("data_parallel", "tensor_parallel"))
    shard_model(model, mesh, torch.float32)
    rows = own_rows(modules, mesh)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.tokens), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    own, everything = ScoreSum(modules, rows=rows), ScoreSum(modules)

    def score(sums: ScoreSum, rows_of: dict) -> None:
        sums.begin(args.batch)
        stream_taylor_scores(model, ids, mask, sums.update, EngineSettings(rows=rows_of), modules)
        sums.end()

    score(own, rows)  # warm-up
    rows_pass = best(lambda: score(own, rows), args.repeats)
    full_pass = best(lambda: score(everything, {}), args.repeats)
    flat = torch.cat([s.flatten() for s in everything.sums.values()])
    flat = flat[: flat.numel() // args.processes * args.processes]
    part = torch.empty(flat.numel() // args.processes)
    reduce_scatter = best(lambda: dist.reduce_scatter_tensor(part, flat), args.repeats)
    if rank == 0:
        out.update(
            rows_pass_s=rows_pass, full_pass_s=full_pass, reduce_scatter_s=reduce_scatter,
            reduce_scatter_gb_per_rank=flat.numel() * 4 * (args.processes - 1) / args.processes / 2**30,
            # batches per second over the N ranks: rows does one batch per rows_pass, data-parallel N
            # batches per (full_pass + reduce_scatter)
            rows_throughput_vs_data_parallel=(full_pass + reduce_scatter) / (args.processes * rows_pass),
        )
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--port", type=int, default=29541)
    args = parser.parse_args()
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(worker, args=(args, out), nprocs=args.processes)
        report = {"machine": describe(), "model": args.model, "batch": args.batch, "tokens": args.tokens, "processes": args.processes, **out}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
