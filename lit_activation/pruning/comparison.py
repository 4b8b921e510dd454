"""Validation 1 as a sweep: dense vs allocations × metrics × sparsities × calibration seeds, perplexity;
in a mixture of experts also whole experts removed, expert scores × ratios × seeds (docs/moe.md).

`Comparison` is the sweep behind `lit-activation compare`. Each point is one validate run of its
own (fresh dense weights, pruning, perplexity, zero-shot when configured; the caller builds a new
trainer and module for it) and is appended to `results.csv` the moment it finishes. Running the
same command again resumes: recorded runs are skipped, and a run that was interrupted is redone
(its partial directory is kept aside, never deleted). `comparison.json` pins what the runs share
(model, data, calibration, each method's options); an output directory holding runs of another
configuration is refused rather than mixed.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lit_activation import outputs, plots
from lit_activation.models.loading import load_causal_lm
from lit_activation.planning.memory import release_memory
from lit_activation.pruning.allocations import Activation, Allocation, GivenCounts, OnTheFlyCounts
from lit_activation.pruning.context import Calibration, PruningContext
from lit_activation.pruning.experts.options import ExpertPruning
from lit_activation.pruning.metrics import PruningMetric

RESULTS = "results.csv"
HEADER = ["method", "pruning_metric", "sparsity", "seed", "perplexity", "metric", "achieved_sparsity", "zeroshot", "seconds"]


EXPERTS = "experts"  # the method of a run that removes whole experts: its metric is the expert score, its sparsity the ratio removed


@dataclass(frozen=True)
class Run:
    """One point of the sweep; `allocation` and `pruning_metric` are None for the dense reference. A run
    removing whole experts (`experts`) has method `experts`, the score's label as its metric and the
    fraction of experts removed as its sparsity (results.csv's columns; no weight inside is pruned)."""

    method: str
    metric: str
    sparsity: float
    seed: int
    allocation: Allocation | None = None
    pruning_metric: PruningMetric | None = None
    experts: ExpertPruning | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        """How the run is found in results.csv."""
        return self.method, self.metric, f"{self.sparsity:g}", str(self.seed)

    @property
    def name(self) -> str:
        """Its run directory's name."""
        return "dense" if self.method == "dense" else f"{self.method}_{self.metric}_s{self.sparsity:g}_seed{self.seed}"


def sweep(
    allocations: Sequence[Allocation], metrics: Sequence[PruningMetric], sparsities: Sequence[float], seeds: Sequence[int],
    experts: Sequence[ExpertPruning] = (),
) -> list[Run]:
    """The dense reference, then every (seed, sparsity, allocation, metric), and every (seed, expert removal)."""
    removals = [(e.score.label, e.ratio) for e in experts]
    if len(set(removals)) != len(removals):
        raise ValueError(f"experts {removals} name a removal twice (score, ratio); compare each once")
    if any(not e.removes for e in experts):
        raise ValueError(f"experts {removals}: a removal needs a ratio in (0, 1); the dense reference runs anyway")
    for kind, labels in (("allocations", [a.label for a in allocations]), ("metrics", [m.label for m in metrics])):
        if len(set(labels)) != len(labels):
            raise ValueError(f"{kind} {labels} name a method twice; compare each once")
    if sparsities and not metrics:
        raise ValueError("metrics is empty; give at least one, e.g. [Wanda]")
    for s in sparsities:
        if not 0.0 < s < 1.0:
            raise ValueError(f"sparsity {s} is outside (0, 1); the dense reference runs anyway")
    if not seeds:
        raise ValueError("seeds is empty; give at least one calibration seed, e.g. [0]")
    # seeds outermost: a metric's dense-model scores depend on the calibration seed only, so the
    # runs of one seed reuse them (pruning/metrics/taylor.py); an early stop also has every method
    return [Run("dense", "-", 0.0, 0)] + [
        run for seed in seeds for run in [
            *(Run(a.label, m.label, s, seed, a, m) for s in sparsities for a in allocations for m in metrics),
            *(Run(EXPERTS, e.score.label, e.ratio, seed, experts=e) for e in experts),
        ]
    ]


def check_output_dir(out: Path) -> None:
    """output_dir is new, empty, or a comparison of this version to resume: never a file, another run's
    directory, nor a results.csv of other columns (refused now, not after the first run)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output_dir {out} is a file; give a directory: a new one, or a comparison's to resume it")
    outputs.check_can_create(out, "output_dir")
    if out.is_dir() and any(out.iterdir()) and not any((out / name).is_file() for name in (RESULTS, "comparison.json")):
        raise FileExistsError(f"output_dir {out} holds other files and no comparison ({RESULTS}, comparison.json); choose a new output_dir")
    header, _ = outputs.read_csv(out / RESULTS)
    if header and header != HEADER:
        raise ValueError(f"{out / RESULTS} has columns {header}; this version writes {HEADER}. Choose a new output_dir")


def recorded(out: Path) -> set[tuple[str, str, str, str]]:
    """Keys of the runs already in results.csv."""
    _, rows = outputs.read_csv(out / RESULTS)
    return {(r["method"], r["pruning_metric"], f"{float(r['sparsity']):g}", r["seed"]) for r in rows}


def pin_configuration(out: Path, fixed: dict, methods: dict[str, dict]) -> dict:
    """Record what the runs share in comparison.json, or check it against an earlier record.

    methods: each allocation's and metric's options by label. New ones may join a comparison; anything else that differs is refused, naming it.
    Returns the record (with any counts computed by earlier runs).
    """
    path = out / "comparison.json"
    try:
        record = json.loads(path.read_text()) if path.is_file() else {"fixed": fixed, "allocations": {}, "resolved_counts": {}}
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); restore it, or choose a new output_dir") from None
    if not isinstance(record, dict) or not isinstance(record.get("fixed"), dict):
        raise ValueError(f"{path} is not a comparison record (no 'fixed' settings); choose a new output_dir")
    changed = sorted(k for k in set(fixed) | set(record["fixed"]) if fixed.get(k) != record["fixed"].get(k))
    changed += sorted(f"allocation {k}" for k, v in methods.items() if k in record["allocations"] and record["allocations"][k] != v)
    if changed:
        raise ValueError(
            f"{out} holds a comparison with other settings ({', '.join(changed)}); resume it with the same settings, "
            "or choose a new output_dir"
        )
    record["allocations"].update(methods)
    outputs.write_json(path, record, overwrite=True)
    return record


@dataclass(frozen=True)
class RunResult:
    """What one run of the sweep measured."""

    perplexity: float
    achieved_sparsity: float
    zero_shot: dict


class Comparison:
    """The sweep in `output_dir`: its runs, what they share, and what is recorded so far.

    Args:
        output_dir: results.csv, summary.md/csv, compare.png, comparison.json and one directory per run.
        runs: the points of the sweep (`sweep`), the dense reference first.
        model: the model's name, for titles.
    """

    def __init__(self, output_dir: str | Path, runs: Sequence[Run], model: str) -> None:
        self.out, self.runs, self.model = Path(output_dir), list(runs), model
        self.record: dict = {}

    def check(self) -> None:
        """Refuse, before any work, an output_dir that holds something other than this kind of comparison."""
        check_output_dir(self.out)

    def pin(self, fixed: dict, methods: dict[str, dict]) -> None:
        """Record what the runs share, or check it against the record of an earlier start (pin_configuration)."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.record = pin_configuration(self.out, fixed, methods)

    def resolve_counts(self, allocations: Sequence[Allocation], dense_counts: Callable[[OnTheFlyCounts], list[float]]) -> None:
        """On-the-fly activation counts, once per comparison (every run starts from the same dense
        model): recorded in comparison.json, so a resumed sweep does not compute them again."""
        for allocation in allocations:
            if not (isinstance(allocation, Activation) and isinstance(allocation.counts, OnTheFlyCounts)):
                continue
            counts = self.record["resolved_counts"].get(allocation.label)
            if counts is None:
                counts = dense_counts(allocation.counts)
                self.record["resolved_counts"][allocation.label] = counts
                outputs.write_json(self.out / "comparison.json", self.record, overwrite=True)
            allocation.counts = GivenCounts(counts)

    def todo(self) -> list[Run]:
        """The runs not yet in results.csv, in sweep order."""
        done = recorded(self.out)
        return [r for r in self.runs if r.key not in done]

    def run(self, validate: Callable[[Run, Path], RunResult], evaluation_metric: str) -> Path:
        """Run every point not yet recorded, `validate(run, run_dir)` each, recording each as it finishes."""
        todo = self.todo()
        elapsed: list[float] = []
        for k, run in enumerate(todo, len(self.runs) - len(todo) + 1):
            print(progress(k, len(self.runs), run, elapsed), flush=True)
            run_dir = self.out / "runs" / run.name
            set_aside(run_dir)
            start = time.perf_counter()
            result = validate(run, run_dir)
            seconds = time.perf_counter() - start
            row = [run.method, run.metric, run.sparsity, run.seed, result.perplexity, evaluation_metric, result.achieved_sparsity,
                   json.dumps(result.zero_shot), round(seconds, 1)]
            outputs.append_csv_row(self.out / RESULTS, HEADER, row)
            write_summary(self.out, self.model)
            elapsed.append(seconds)
        if not todo:  # a finished sweep's summary, rebuilt by this version from results.csv
            write_summary(self.out, self.model)
        summary = self.out / "summary.md"
        print(summary.read_text() if summary.is_file() else "")
        print(f"Comparison: {summary}, summary.csv, {RESULTS}, compare.png ({len(self.runs)} runs, {len(todo)} run now)")
        return self.out


def dense_counts(
    source: OnTheFlyCounts, model: str, dtype: str, trust_remote_code: bool, device: torch.device, calibration: Calibration
) -> list[float]:
    """Finding 1 counts of the dense model (loaded for them, then freed): what `source` computes."""
    dense, tokenizer = load_causal_lm(model, dtype, trust_remote_code, device=device)
    c = calibration
    context = PruningContext(dense, tokenizer, torch.empty(0, dtype=torch.long), c.dataset, c.files, c.batch_size)
    counts = source.layer_counts(context)
    del dense, context
    release_memory()
    return counts


def set_aside(run_dir: Path) -> None:
    """An interrupted run's directory is moved aside (kept, never deleted) before the run is redone."""
    if run_dir.exists():
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}"))


def progress(k: int, n: int, run: Run, elapsed: Sequence[float]) -> str:
    """'run k of n (...) , about 12 min left' from the mean duration of the runs done so far."""
    left = ""
    if elapsed:
        seconds = statistics.fmean(elapsed) * (n - k + 1)
        left = f", about {seconds / 60:.0f} min left" if seconds >= 60 else f", about {seconds:.0f} s left"
    return f"Compare: run {k} of {n}: {run.name}{left}"


def label(method: str, metric: str) -> str:
    """How a (allocation, metric) pair is named in tables: 'owl + taylor'; the dense one 'dense'; a removal
    of whole experts by its score: 'reap: experts removed'."""
    if method == EXPERTS:
        return f"{metric}: experts removed"
    return "dense" if method == "dense" else f"{method} + {metric}"


def summarize(rows: Sequence[dict]) -> list[dict]:
    """Mean ± std (sample std over seeds; 0 for one seed) of perplexity per (allocation + metric, sparsity)."""
    groups: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        groups.setdefault((label(r["method"], r["pruning_metric"]), float(r["sparsity"])), []).append(float(r["perplexity"]))
    return [
        {"method": m, "sparsity": s, "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "runs": len(v)}
        for (m, s), v in groups.items()
    ]


def markdown_table(summary: Sequence[dict], metric: str) -> str:
    """The summary as a Markdown table: one row per method, one column per sparsity."""
    sparsities = sorted({r["sparsity"] for r in summary if r["method"] != "dense"})
    methods = list(dict.fromkeys(r["method"] for r in summary))
    # One run has no spread: its cell shows the value and the seed count, never "± 0.00".
    cell = {
        (r["method"], r["sparsity"]): f"{r['mean']:.2f} ± {r['std']:.2f}" if r["runs"] > 1 else f"{r['mean']:.2f} (1 seed)"
        for r in summary
    }
    lines = [f"Perplexity ({metric}), mean ± std over calibration seeds", ""]
    if any(m.endswith(": experts removed") for m in methods):
        lines += ["A column is the weights' sparsity, or for the rows of whole experts removed, the fraction of each layer's experts removed.", ""]
    lines.append("| method | " + " | ".join(f"{s:.0%}" for s in sparsities) + " |")
    lines.append("|---" * (len(sparsities) + 1) + "|")
    for m in methods:
        if m == "dense":
            lines.append(f"| dense | {summary_mean(summary, 'dense')} (0 %) |" + " |" * (len(sparsities) - 1))
        else:
            lines.append(f"| {m} | " + " | ".join(cell.get((m, s), "") for s in sparsities) + " |")
    return "\n".join(lines) + "\n"


def summary_mean(summary: Sequence[dict], method: str) -> str:
    """The mean of a method's single cell (the dense model: one run, no seed)."""
    return next(f"{r['mean']:.2f}" for r in summary if r["method"] == method)


def write_summary(out: Path, model: str) -> None:
    """summary.csv / summary.md / compare.png from everything in results.csv (rebuilt after each run)."""
    _, rows = outputs.read_csv(out / RESULTS)
    if not rows:
        return
    metric = rows[0]["metric"]
    summary = summarize(rows)
    outputs.write_csv(out / "summary.csv", ["method", "sparsity", "mean", "std", "runs", "metric"], ([*r.values(), metric] for r in summary), overwrite=True)
    outputs.write_text(out / "summary.md", markdown_table(summary, metric), overwrite=True)
    sparsities = sorted({r["sparsity"] for r in summary if r["method"] != "dense"})
    methods = [m for m in dict.fromkeys(r["method"] for r in summary) if m != "dense"]
    if not sparsities:
        return
    series = {m: [next((r["mean"] for r in summary if r["method"] == m and r["sparsity"] == s), float("nan")) for s in sparsities] for m in methods}
    dense = [r["mean"] for r in summary if r["method"] == "dense"]
    if dense:
        series["dense"] = dense * len(sparsities)
    fig = plots.line_figure(sparsities, series, "sparsity", f"perplexity ({metric})", f"{model}: layer-wise allocations + metrics")
    fig.axes[0].set_yscale("log")
    outputs.save_figure(out / "compare.png", fig, overwrite=True)
    plots.close(fig)
