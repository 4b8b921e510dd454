"""Pruning comparison (Validation 1): dense vs allocations × sparsities × calibration seeds, perplexity.

    python -m lit_activation.compare --config configs/compare_embedded.yaml
    python -m lit_activation.compare --config configs/compare_embedded.yaml --sparsities "[0.5]" --seeds "[0]"

Each run reloads the model (cached safetensors), prunes it with WandaPruning and validates it with
Lightning. Activation counts are computed once (they do not depend on the calibration seed).
Writes results.csv (every run), summary.csv / summary.md (mean ± std over seeds) and compare.png.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

from jsonargparse import CLI
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from lit_activation import io, plots
from lit_activation.allocation import activation_layer_counts
from lit_activation.callbacks.pruning import WandaPruning
from lit_activation.data.perplexity import PerplexityDataModule
from lit_activation.data.samples import sample_inputs
from lit_activation.models import load_causal_lm
from lit_activation.module import ActivationModule


def next_version(root: Path) -> Path:
    """root/version_N with N one past the highest existing: earlier comparisons are never touched."""
    versions = [int(p.name.split("_")[1]) for p in root.glob("version_*") if p.name.split("_")[1].isdigit()]
    return root / f"version_{max(versions, default=-1) + 1}"


def _validate(out: Path, name: str, model: str, data: dict, pruning: dict) -> float:
    module = ActivationModule(model=model)
    dm = PerplexityDataModule(**data)
    trainer = Trainer(
        accelerator="auto", devices=1, inference_mode=False, enable_progress_bar=False, enable_model_summary=False,
        logger=TensorBoardLogger(out, name=name, version=0), callbacks=[WandaPruning(**pruning)],
    )
    (metrics,) = trainer.validate(module, datamodule=dm, verbose=False)
    return float(metrics[dm.metric_name])


def summarize(rows: list[dict]) -> list[dict]:
    """Mean ± std (sample std over seeds; 0 for one seed) per (method, sparsity)."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["sparsity"]), []).append(r["perplexity"])
    return [
        {"method": m, "sparsity": s, "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "runs": len(v)}
        for (m, s), v in groups.items()
    ]


def markdown_table(summary: list[dict], metric: str) -> str:
    """The summary as a Markdown table: one row per method, one column per sparsity."""
    sparsities = sorted({r["sparsity"] for r in summary if r["method"] != "dense"})
    methods = list(dict.fromkeys(r["method"] for r in summary))
    cell = {(r["method"], r["sparsity"]): f"{r['mean']:.2f} ± {r['std']:.2f}" for r in summary}
    lines = [f"Perplexity ({metric}), mean ± std over calibration seeds", "", "| method | " + " | ".join(f"{s:.0%}" for s in sparsities) + " |"]
    lines.append("|---" * (len(sparsities) + 1) + "|")
    for m in methods:
        if m == "dense":
            lines.append(f"| dense | {cell[('dense', 0.0)]} (0 %) |" + " |" * (len(sparsities) - 1))
        else:
            lines.append(f"| {m} | " + " | ".join(cell.get((m, s), "") for s in sparsities) + " |")
    return "\n".join(lines) + "\n"


def compare(
    model: str = "smollm2-135m",
    methods: list[str] = ["uniform", "activation", "owl"],  # noqa: B006
    sparsities: list[float] = [0.5, 0.6, 0.7],  # noqa: B006
    seeds: list[int] = [0, 1, 2],  # noqa: B006
    eval_dataset: str = "wiki",
    eval_seqlen: int = 512,
    eval_max_chunks: int | None = 16,
    calibration: str = "news",
    calibration_samples: int = 32,
    seqlen: int = 256,
    gamma: float = 2e-5,
    activation_samples: int = 16,
    activation_length: int = 128,
    batch_size: int = 8,
    output_dir: str = "runs/compare",
) -> Path:
    """Run the comparison and write its tables and plot; returns the output directory.

    Args:
        model: model name or path. methods: allocations to compare (dense is always included).
        sparsities: overall targets. seeds: calibration seeds (mean ± std over them).
        eval_dataset, eval_seqlen, eval_max_chunks: the perplexity protocol (recorded with every number).
        calibration, calibration_samples, seqlen: the Wanda calibration batch.
        gamma, activation_samples, activation_length: the on-the-fly activation counts.
        batch_size: calibration sequences per block call. output_dir: a new version dir is made inside.
    """
    out = next_version(Path(output_dir))
    data = {"dataset": eval_dataset, "seqlen": eval_seqlen, "max_chunks": eval_max_chunks, "batch_size": 4}
    seed_everything(0)
    net, tokenizer = load_causal_lm(model)
    samples = sample_inputs(calibration, activation_samples, tokenizer, 0, activation_length, activation_length)
    counts = activation_layer_counts(net, samples, gamma) if "activation" in methods else None
    del net
    base = {"calibration": calibration, "calibration_samples": calibration_samples, "seqlen": seqlen, "batch_size": batch_size, "counts": counts}
    rows = [{"method": "dense", "sparsity": 0.0, "seed": 0, "perplexity": _validate(out, "dense", model, data, {**base, "sparsity": 0.0})}]
    metric = PerplexityDataModule(**data).metric_name
    for sparsity in sparsities:
        for method in methods:
            for seed in seeds:
                ppl = _validate(out, f"{method}_{sparsity}_{seed}", model, data, {**base, "sparsity": sparsity, "allocation": method, "seed": seed})
                rows.append({"method": method, "sparsity": sparsity, "seed": seed, "perplexity": ppl})
                logging.info("%s %.2f seed %d: %.3f", method, sparsity, seed, ppl)
    io.write_csv(out / "results.csv", ["method", "sparsity", "seed", "perplexity", "metric"], ([*r.values(), metric] for r in rows))
    summary = summarize(rows)
    io.write_csv(out / "summary.csv", ["method", "sparsity", "mean", "std", "runs", "metric"], ([*r.values(), metric] for r in summary))
    io.write_text(out / "summary.md", markdown_table(summary, metric))
    series = {m: [next(r["mean"] for r in summary if r["method"] == m and r["sparsity"] == s) for s in sparsities] for m in methods}
    series["dense"] = [rows[0]["perplexity"]] * len(sparsities)
    fig = plots.line_figure(sparsities, series, "sparsity", f"perplexity ({metric})", f"{model}: Wanda layer-wise allocations")
    fig.axes[0].set_yscale("log")
    io.save_figure(out / "compare.png", fig)
    plots.close(fig)
    print((out / "summary.md").read_text())
    print(f"Comparison: {out / 'summary.md'}, summary.csv, results.csv, compare.png")
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)
    CLI(compare, as_positional=False)


if __name__ == "__main__":
    main()
