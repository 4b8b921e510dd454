"""Memory plans of the paper's workloads for published model configs (no weights, no network).

    python benchmarks/plan_table.py                       # one 80 GB GPU, the README table
    python benchmarks/plan_table.py --devices 8 --memory-gb 80 --models llama-2-70b --sharded

Workloads, as in configs/: Finding 1 counts (batch 4 × 512 tokens, one fp32 accumulator), LLMDcos
(3 datasets: 6 rows per group, 512 tokens), Wanda or SparseGPT pruning with a counts file (128
× 2048 calibration, block batch 1) and perplexity (2048 tokens). Weights bf16, compute fp32.
"""

from __future__ import annotations

import argparse

from lit_activation.callbacks import ActivationCounts, Pruning
from lit_activation.engine import EngineSettings
from lit_activation.models.architectures import model_config
from lit_activation.planning.memory import GB
from lit_activation.planning.plan import EvaluationPass, Job, Layout, ScoringPass, plan_memory
from lit_activation.pruning.allocations import Activation, CountsFile
from lit_activation.pruning.context import Calibration
from lit_activation.pruning.metrics import SparseGPT

WORKLOADS = {
    "counts": dict(datamodule=ScoringPass(rows=4, length=512), callbacks=[ActivationCounts()]),
    "LLMDcos": dict(datamodule=ScoringPass(rows=6, length=512)),  # its tables (LLMDcos) follow a data module's groups: left out here
    "pruning + perplexity": dict(
        datamodule=EvaluationPass(rows=1, seqlen=2048),
        callbacks=[Pruning(sparsity=0.5, allocation=Activation(CountsFile("counts.json")), calibration=Calibration(samples=128, seqlen=2048))],
    ),
    "SparseGPT + perplexity": dict(  # as above, SparseGPT for Wanda: H = 2XXᵀ of every linear of a block, then one solve at a time
        datamodule=EvaluationPass(rows=1, seqlen=2048),
        callbacks=[
            Pruning(sparsity=0.5, allocation=Activation(CountsFile("counts.json")), metric=SparseGPT(), calibration=Calibration(samples=128, seqlen=2048))
        ],
    ),
}


def row(model: str, workload: str, devices: int, sharded: bool, memory_gb: float, checkpoint_blocks: bool) -> str:
    """One Markdown table row: the plan's largest phase and its main items."""
    layout = Layout("cuda", devices=devices, sharded=sharded)
    job = Job(model=model, dtype="bfloat16", engine=EngineSettings(checkpoint_blocks=checkpoint_blocks), layout=layout, **WORKLOADS[workload])
    plan = plan_memory(job, model_config(model), int(memory_gb * GB))
    phase, peak = plan.peak()
    items = plan.phases[phase]
    weights = sum(v for k, v in items.items() if k.startswith(("weights", "gathered"))) / GB
    state = items.get("Finding 1 sums (fp32)", 0) / GB
    work = sum(v for k, v in items.items() if k.startswith(("activations", "calibration", "forward", "loss", "OWL"))) / GB
    verdict = "yes" if plan.fits() else "**no**"
    host = plan.host_peak() / GB
    return f"| {model} | {workload} | {phase} | {weights:.1f} | {state:.1f} | {work:.1f} | {peak / GB:.1f} | {verdict} | {host:.1f} | {host * devices:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["llama-2-7b", "llama-2-13b", "llama-3-8b", "llama-2-70b"])
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--sharded", action="store_true", help="FSDP2 through ModelParallelStrategy")
    parser.add_argument("--memory-gb", type=float, default=80.0)
    parser.add_argument("--checkpoint-blocks", action="store_true", help="blocks recomputed in the backward")
    args = parser.parse_args()
    where = f"{args.devices} × {args.memory_gb:g} GB" + (" (sharded)" if args.sharded else "")
    where += ", blocks recomputed" if args.checkpoint_blocks else ""
    print(f"Per device, {where}; GB = 2^30 bytes\n")
    print("| model | job | peak phase | weights | Finding 1 sums | activations / buffers | peak | fits | host per rank | host per node |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for workload in args.workloads:
            print(row(model, workload, args.devices, args.sharded, args.memory_gb, args.checkpoint_blocks), flush=True)


if __name__ == "__main__":
    main()
