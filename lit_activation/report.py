"""`lit-activation report RUN_DIR [RUN_DIR ...]`: one report of what the runs say about the paper's claims.

    lit-activation report runs/counts/version_0 runs/llmdcos/version_0 runs/sts/version_0 runs/compare \
        [--output runs/report] [--seed 0] [--resamples 2000]

Each RUN_DIR is a versioned run directory (runs/<name>/version_N), a logger directory (runs/<name>:
its newest version with results) or a compare output directory;
what it holds is read from its files (`KINDS`). The report goes to OUTPUT/version_N/ (the next free
N, so nothing is overwritten): report.md, with the runs' own figures linked inline, and report.json
with every statistic. Its path is the last line printed. The statistics and verdicts are defined
in `lit_activation.findings` and in docs/method.md, "Findings report: operational definitions".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_activation import findings as F
from lit_activation import io
from lit_activation.data.registry import REGISTRY

# The files a run directory can hold -> what they are (the writers: callbacks/*.py, comparison.py).
KINDS = {
    "counts.json": "counts", "llmdcos.json": "llmdcos", "sts.json": "sts", "allpairs.json": "allpairs",
    "results.csv": "compare", "zeroshot.json": "zeroshot", "pruning.json": "pruning",
}
FIGURES = {
    "counts": ("counts.png",), "llmdcos": ("llmdcos_box.png", "similarity_matrix.png"), "sts": ("sts_layers.png",),
    "compare": ("compare.png",), "pruning": ("sparsity.png",),
}  # allpairs: every PNG of its directory (its writer is newer than this list)
COMPARE_COLUMNS = ("method", "sparsity", "seed", "perplexity")
DEFINITIONS = 'docs/method.md, "Findings report: operational definitions"'


class _Missing(Exception):
    """A run holds the file but not a field an assessment needs."""


@dataclass
class Run:
    """One input directory and its parsed files, by kind."""

    index: int
    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return f"run {self.index}"

    def figures(self) -> list[Path]:
        """The PNGs its writers made, in a fixed order."""
        found = [self.path / f for kind in self.data for f in FIGURES.get(kind, ()) if (self.path / f).is_file()]
        if "allpairs" in self.data:
            found += sorted(p for p in self.path.glob("*.png") if p not in found)
        return found


@dataclass
class Section:
    """One part of the report: its summary rows, its Markdown and its JSON."""

    key: str
    title: str
    summary: list[F.Assessment]
    lines: list[str]
    parts: list[F.Assessment] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# reading


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a JSON {type(obj).__name__}; every run file report reads is a JSON object")
    return obj


def load_run(index: int, path: Path) -> Run:
    """Parse every known file of a run directory; a directory with none of them is refused, naming them."""
    if not path.is_dir():
        raise FileNotFoundError(f"run dir {path} does not exist (or is not a directory)")
    data: dict[str, Any] = {}
    for name, kind in KINDS.items():
        file = path / name
        if not file.is_file():
            continue
        if kind == "compare":
            header, rows = io.read_csv(file)
            record = path / "comparison.json"
            data[kind] = {"header": header, "rows": rows, "comparison": _read_json(record) if record.is_file() else None}
        else:
            data[kind] = _read_json(file)
    if not data:
        newest = newest_version(path)
        if newest is not None:  # a logger dir (runs/<name>): its newest run, as `make demo` passes them
            print(f"{path}: reading its newest run, {newest.name}")
            return load_run(index, newest)
        raise ValueError(f"run dir {path} holds none of the files report reads: {', '.join(KINDS)}")
    return Run(index, path, data)


def versions(parent: Path) -> list[tuple[int, Path]]:
    """The version_N entries under `parent` (the logger's layout), as (N, path), highest first; a stray
    file of that name counts too, so that a new version never tries to take its name."""
    found = [(int(m.group(1)), p) for p in parent.iterdir() if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return sorted(found, reverse=True)


def newest_version(path: Path) -> Path | None:
    """The highest-numbered version_N under `path` that holds a file report reads (None if there is none)."""
    return next((v for _, v in versions(path) if any((v / name).is_file() for name in KINDS)), None)


def _need(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj or obj[key] is None:
        raise _Missing(f"{where} lacks {key!r}")
    return obj[key]


def dataset_kind(name: str) -> str:
    """'corpus' (general running text), 'task' (formatted prompts) or 'other', from the registry."""
    spec = REGISTRY.get(name)
    if spec is None:
        return "other"
    return {"corpus": "corpus", "prompt": "task"}.get(spec.kind, "other")


# ---------------------------------------------------------------------------------------------
# formatting


def fmt(x: Any, digits: int = 3) -> str:
    """A number with `digits` significant digits; '–' for none/NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (bool, str)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}"


def fmt_ci(a: F.Assessment) -> str:
    return f"[{fmt(a.interval[0])}, {fmt(a.interval[1])}]" if a.interval else "–"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


def not_run_section(key: str, title: str, why: str, descriptive: bool = False) -> Section:
    """A section no input speaks to: says so (never empty); descriptive sections stay out of the summary."""
    a = F.not_run(title, why)
    return Section(key, title, [] if descriptive else [a], [f"**Not run:** {why}.", ""], [a])


def tally(a: F.Assessment) -> str:
    """'3/3 held' for a combined claim, '' for a single one."""
    d = a.detail
    if "parts" not in d:
        return ""
    counts = [f"{d['held']}/{d['parts']} held"] + [f"{d[k]} {k.replace('_', ' ')}" for k in ("not_held", "inconclusive", "unassessed") if d.get(k)]
    return ", ".join(counts)


def rests_on(text: str) -> str:
    return f"*Rests on:* {text}"


# ---------------------------------------------------------------------------------------------
# Finding 1


def _count_profiles(run: Run, clash: set[str]) -> tuple[str, dict[str, dict], dict[str, dict[str, list[float]]], list[str]]:
    """(model, {dataset: info}, {threshold label: {dataset: layer counts}}, notes) of one counts run.

    A dataset also scored by another input run (`clash`) is labelled with its run: both are kept.
    """
    res = run.data["counts"]
    where = f"counts.json in {run.path}"
    datasets = _need(res, "datasets", where)
    gamma = _need(res, "gamma", where)
    info, profiles, notes = {}, defaultdict(dict), []
    for name, d in datasets.items():
        label = f"{name} [{run.name}]" if name in clash else name
        info[label] = {"name": name, "n_samples": d.get("n_samples"), "kind": dataset_kind(name), "thresholds": {}}
        if "layer_counts" not in d:
            notes.append(f"{where}: dataset {name} lacks 'layer_counts'")
            continue
        profiles[f"γ={gamma:g}"][label] = d["layer_counts"]
        info[label]["thresholds"][f"γ={gamma:g}"] = gamma
        for q, entry in (d.get("quantile_counts") or {}).items():
            if isinstance(entry, dict) and "layer_counts" in entry:
                profiles[q][label] = entry["layer_counts"]
                info[label]["thresholds"][q] = entry.get("threshold")
    return str(res.get("model", "?")), info, dict(profiles), notes


def _finding1_model(model: str, group: dict, seed: int, resamples: int) -> tuple[list[str], list[F.Assessment], list[F.Assessment]]:
    """(Markdown, summary rows, parts) of Finding 1 for the pooled counts runs of one model."""
    info = group["info"]
    lines = [f"### {model}", "", rests_on(
        f"model {model}; {'/'.join(map(str, sorted(group['n_layers'], key=str)))} layers; datasets "
        + ", ".join(f"{n} ({info[n]['kind']}, {fmt(info[n]['n_samples'])} samples)" for n in info)
        + f"; thresholds {', '.join(group['profiles'])} (a quantile threshold is that dataset's own, see the table); "
        f"inputs {', '.join(f'{r.name} ({r.path})' for r in group['runs'])}. Intervals resample layers within each half: "
        "counts are stored per layer, not per sample."
    ), ""]
    rows, shallow_parts, corpus_parts = [], [], []
    for label, per in group["profiles"].items():
        for name, counts in per.items():
            a = F.count_profile(f"Finding 1, {model}, {name}, {label}", counts, seed=seed, resamples=resamples)
            a.detail.update(dataset=name, threshold=label, threshold_value=info[name]["thresholds"].get(label))
            shallow_parts.append(a)
            d = a.detail
            rows.append([
                name, info[name]["kind"], f"{label} ({fmt(info[name]['thresholds'].get(label))})", fmt(d.get("peak_layer")),
                fmt(d.get("shallow_mean")), fmt(d.get("deep_mean")), fmt(d.get("ratio")), fmt(a.statistic), fmt_ci(a),
                "yes" if d.get("first_layer_below_next_two") else "no", a.label,
            ])
        corpora = {n: c for n, c in per.items() if info[n]["kind"] == "corpus"}
        tasks = {n: c for n, c in per.items() if info[n]["kind"] == "task"}
        b = F.corpora_deep(f"Finding 1b, {model}, {label}", corpora, tasks, seed=seed, resamples=resamples)
        b.detail["threshold"] = label
        corpus_parts.append(b)
    lines += table(
        ["dataset", "kind", "threshold", "peak layer", "shallow-half mean", "deep-half mean", "ratio (+1)", "log ratio", "95 % interval",
         "layer 0 < layers 1–2", "verdict"], rows,
    )
    lines += ["Corpora vs task sets in the deep half (log of corpus mean / task mean, +1 each):", ""]
    lines += table(
        ["threshold", "corpora", "tasks", "corpora deep mean", "tasks deep mean", "log ratio", "95 % interval", "verdict"],
        [[b.detail["threshold"], ", ".join(b.detail.get("corpora", [])) or "–", ", ".join(b.detail.get("tasks", [])) or "–",
          fmt(b.detail.get("corpora_deep_mean")), fmt(b.detail.get("tasks_deep_mean")), fmt(b.statistic), fmt_ci(b), b.label] for b in corpus_parts],
    )
    dips = [a for a in shallow_parts if a.detail.get("n_layers", 0) >= 3]
    lines += [f"Layer 0 below layers 1–2 (the paper's low first layer): {sum(a.detail['first_layer_below_next_two'] for a in dips)} of "
              f"{len(dips)} profiles (descriptive: no interval).", ""]
    kinds = {i["kind"] for i in info.values()}
    claim_b = f"Finding 1b ({model}): corpora higher than task sets in the deep half, every threshold"
    summary = [
        F.combine(f"Finding 1 ({model}): counts concentrate in shallow layers, every dataset and threshold", shallow_parts),
        F.combine(claim_b, corpus_parts) if {"corpus", "task"} <= kinds else F.not_run(
            claim_b, "no counts run on a general corpus (configs/counts_corpora.yaml)" if "corpus" not in kinds
            else "no counts run on task sets (configs/counts.yaml)"
        ),
    ]
    return lines, summary, shallow_parts + corpus_parts


def finding1(runs: Sequence[Run], seed: int, resamples: int) -> Section:
    """Finding 1: do activated-parameter counts concentrate in shallow layers; corpora vs tasks in deep layers."""
    key, title = "finding1", "Finding 1: activated parameters concentrate in shallow layers"
    counts_runs = [r for r in runs if "counts" in r.data]
    if not counts_runs:
        return not_run_section(key, title, "no counts run among the inputs (counts.json; `lit-activation predict --config configs/counts.yaml`)")
    # Runs of one model are pooled: the paper compares task sets (Fig. 1) and corpora (Fig. 2) from separate runs.
    models: dict[str, dict] = {}
    notes: list[str] = []
    for run in counts_runs:
        elsewhere = {n for r in counts_runs if r is not run for n in (r.data["counts"].get("datasets") or {})}
        try:
            model, info, profiles, run_notes = _count_profiles(run, elsewhere)
        except _Missing as err:
            notes.append(f"cannot assess {run.name} ({run.path}): {err}")
            continue
        group = models.setdefault(model, {"info": {}, "profiles": defaultdict(dict), "runs": [], "n_layers": set()})
        group["info"].update(info)
        for label, per in profiles.items():
            group["profiles"][label].update(per)
        group["runs"].append(run)
        group["n_layers"].add(run.data["counts"].get("n_layers"))
        notes += run_notes
    lines: list[str] = []
    summary, parts = [], []
    for model, group in models.items():
        model_lines, model_summary, model_parts = _finding1_model(model, group, seed, resamples)
        lines += model_lines
        summary += model_summary
        parts += model_parts
    if not models:
        summary.append(F.cannot("Finding 1", "; ".join(notes)))
    lines += [f"Note: {n}." for n in notes] + ([""] if notes else [])
    head = [f"**Verdict: {summary[0].label}.**" if len(summary) == 1 else "**Verdicts:** " + "; ".join(f"{a.claim}: {a.label}" for a in summary), ""]
    return Section(key, title, summary, head + lines, parts, [f for r in counts_runs for f in r.figures() if f.name == "counts.png"])


# ---------------------------------------------------------------------------------------------
# Findings 2 and 3: LLMDcos


def _pair_values(res: dict, x: str, y: str) -> list | None:
    table_ = res["llmdcos"]
    return table_.get(f"{x}-{y}", table_.get(f"{y}-{x}"))


def _llmdcos_input(run: Run) -> tuple[dict, list[str], int]:
    res = run.data["llmdcos"]
    where = f"llmdcos.json in {run.path}"
    names = list(_need(res, "datasets", where))
    _need(res, "llmdcos", where)
    n_layers = res.get("n_layers") or next((len(v[0]) for v in res["llmdcos"].values() if v), 0)
    return res, names, int(n_layers)


def finding2(runs: Sequence[Run], seed: int, resamples: int) -> Section:
    """Finding 2: cross-domain LLMDcos falls from the first to the last third of layers; same-domain stays flat."""
    key, title = "finding2", "Finding 2: cross-domain similarity falls with depth"
    llm_runs = [r for r in runs if "llmdcos" in r.data]
    if not llm_runs:
        return not_run_section(key, title, "no LLMDcos run among the inputs (llmdcos.json; `lit-activation predict --config configs/llmdcos.yaml`)")
    lines, summary, parts = [], [], []
    for run in llm_runs:
        try:
            res, names, n_layers = _llmdcos_input(run)
        except _Missing as err:
            summary.append(F.cannot(f"Finding 2 ({run.name})", str(err)))
            continue
        first, last = F.thirds(n_layers)
        model = res.get("model", "?")
        cross, same, rows = [], [], []
        for i, x in enumerate(names):
            for y in names[i:]:
                values = _pair_values(res, x, y)
                claim = f"Finding 2, {model}, {x}-{y}"
                if values is None:
                    a = F.cannot(claim, f"llmdcos.json has no pair {x}-{y}")
                else:
                    a = F.depth_drop(claim, values, same_domain=x == y, seed=seed, resamples=resamples)
                a.detail["pair"] = f"{x}-{y}"
                (same if x == y else cross).append(a)
                rows.append([f"{x}-{y}", "same" if x == y else "cross", fmt(a.detail.get("n_pairs")), fmt(a.detail.get("first_mean")),
                             fmt(a.detail.get("last_mean")), fmt(a.statistic), fmt_ci(a), a.label])
        lines += [f"### {model} ({run.name})", "", rests_on(
            f"model {model}; datasets {', '.join(names)}; {res.get('n_pairs', '?')} sample pairs per dataset pair; {n_layers} layers, "
            f"first third {first[0] if first else '–'}–{first[-1] if first else '–'}, last third {last[0] if last else '–'}–{last[-1] if last else '–'}; "
            f"{run.path}. Intervals resample sample pairs; same-domain margin {F.SAME_DOMAIN_MARGIN}."
        ), ""]
        lines += table(["pair", "domain", "pairs", "first-third mean", "last-third mean", "first − last", "95 % interval", "verdict"], rows)
        summary += [
            F.combine(f"Finding 2 ({model}, {run.name}): cross-domain LLMDcos falls with depth, every pair", cross)
            if cross else F.cannot(f"Finding 2 ({model}, {run.name}): cross-domain", "one dataset only: no cross-domain pair"),
            F.combine(f"Finding 2 ({model}, {run.name}): same-domain LLMDcos flat or rising (falls ≤ {F.SAME_DOMAIN_MARGIN}), every dataset", same),
        ]
        parts += cross + same
    head = ["**Verdicts:** " + "; ".join(f"{a.claim}: {a.label}" for a in summary), ""]
    return Section(key, title, summary, head + lines, parts, [f for r in llm_runs for f in r.figures() if f.name == "llmdcos_box.png"])


def deep_mean(values: list, layers: Sequence[int]) -> list[float]:
    """Per sample group (row of a pairs × layers table), the mean over `layers`; NaN if a value is missing."""
    return [
        sum(row[i] for i in layers) / len(layers) if all(isinstance(row[i], (int, float)) for i in layers) else math.nan
        for row in values
    ]


def finding3(runs: Sequence[Run], seed: int, resamples: int) -> Section:
    """Finding 3 / Fig. 6: is every dataset's self-similarity the maximum of its row, by a margin?"""
    key, title = "finding3", "Finding 3 / Fig. 6: each dataset is most similar to itself in deep layers"
    llm_runs = [r for r in runs if "llmdcos" in r.data]
    if not llm_runs:
        return not_run_section(key, title, "no LLMDcos run among the inputs (llmdcos.json with `matrix`; `configs/similarity_matrix.yaml`)")
    lines, summary, parts = [], [], []
    for run in llm_runs:
        try:
            res, names, n_layers = _llmdcos_input(run)
            first, last = _need(res, "matrix_layers", f"llmdcos.json in {run.path}")
        except _Missing as err:
            summary.append(F.cannot(f"Finding 3 ({run.name})", str(err)))
            continue
        model = res.get("model", "?")
        layers = list(range(int(first), int(last) + 1))

        margins, rows = [], []
        stored = F.diagonal_is_row_max(res["matrix"]) if res.get("matrix") else [None] * len(names)
        for i, x in enumerate(names):
            own = _pair_values(res, x, x)
            others = {y: _pair_values(res, x, y) for y in names if y != x}
            claim = f"Finding 3, {model}, {x}"
            if own is None or any(v is None for v in others.values()):
                a = F.cannot(claim, f"llmdcos.json lacks a pair of {x}")
            else:
                a = F.self_margin(claim, deep_mean(own, layers), {y: deep_mean(v, layers) for y, v in others.items()}, seed=seed, resamples=resamples)
            a.detail.update(dataset=x, stored_diagonal_is_row_max=stored[i] if i < len(stored) else None)
            margins.append(a)
            rows.append([x, fmt(a.detail.get("self")), a.detail.get("best_other", "–"), fmt(a.detail.get("best_other_value")), fmt(a.statistic),
                         fmt_ci(a), {True: "yes", False: "no", None: "–"}[a.detail["stored_diagonal_is_row_max"]], a.label])
        lines += [f"### {model} ({run.name})", "", rests_on(
            f"model {model}; datasets {', '.join(names)}; {res.get('n_pairs', '?')} sample groups; matrix layers {first}–{last} of {n_layers}; "
            f"{run.path}. Intervals resample sample groups, paired across all dataset pairs."
        ), ""]
        lines += table(["dataset", "self", "best other", "its value", "margin", "95 % interval", "diagonal is row max (stored matrix)", "verdict"], rows)
        claim = f"Finding 3 ({model}, {run.name}): every dataset most similar to itself"
        summary.append(F.combine(claim, margins) if len(names) > 1 else F.cannot(claim, "needs at least two datasets"))
        parts += margins
    head = ["**Verdicts:** " + "; ".join(f"{a.claim}: {a.label}" for a in summary), ""]
    return Section(key, title, summary, head + lines, parts, [f for r in llm_runs for f in r.figures() if f.name == "similarity_matrix.png"])


# ---------------------------------------------------------------------------------------------
# Validation 3 and the all-pairs baselines


def _best(series: Any) -> str:
    """'0.61 (layer 12)' for a per-layer list of ρ."""
    if not isinstance(series, list) or not series:
        return "–"
    finite = [(v, i) for i, v in enumerate(series) if isinstance(v, (int, float)) and math.isfinite(v)]
    if not finite:
        return "–"
    v, i = max(finite)
    return f"{fmt(v)} (layer {i})"


def _baseline(res: dict, name: str) -> str:
    """'0.42 (p 0.001)' for a baseline's ρ stored in sts.json, '–' without it."""
    if f"{name}_spearman" not in res:
        return "–"
    p = res.get(f"{name}_p_value")
    return fmt(res[f"{name}_spearman"]) + (f" (p {fmt(p, 2)})" if p is not None else "")


def _versus(versus: dict, name: str) -> str:
    v = versus.get(name)
    return f"{fmt(v['difference'])} [{fmt(v['interval'][0])}, {fmt(v['interval'][1])}]" if v else "–"


def validation3(runs: Sequence[Run], seed: int, resamples: int) -> Section:
    """Validation 3: Spearman ρ of layer-summed LLMDcos with STS gold scores, beside baselines when present."""
    key, title = "validation3", "Validation 3: deep-layer LLMDcos tracks semantic similarity (STS)"
    sts_runs = [r for r in runs if "sts" in r.data]
    if not sts_runs:
        return not_run_section(key, title, "no STS run among the inputs (sts.json; `lit-activation predict --config configs/sts.yaml`)")
    rows, summary = [], []
    for run in sts_runs:
        res = run.data["sts"]
        model, dataset = res.get("model", "?"), res.get("dataset", "?")
        claim = f"Validation 3 ({model}, {dataset})"
        a = F.sts_correlation(claim, res.get("spearman"), res.get("p_value"), res.get("layer_sum"), res.get("gold"), seed=seed, resamples=resamples)
        if res.get("layer_sum") is None or res.get("gold") is None:
            a.reason = a.reason or "sts.json lacks gold/layer_sum: no interval"
        scalar = {k: v for k, v in res.items() if k.startswith(("hidden", "tfidf")) and not isinstance(v, list)}
        a.detail.update(model=model, dataset=dataset, layers=res.get("layers"), n_pairs_file=res.get("n_pairs"), baselines=scalar)
        versus = {}  # LLMDcos ρ minus each baseline's, paired over sentence pairs, when the run stored per-pair values
        for name, key_ in (("hidden", "hidden_layer_sum"), ("tfidf", "tfidf")):
            if isinstance(res.get(key_), list) and isinstance(res.get("layer_sum"), list) and isinstance(res.get("gold"), list):
                diff = F.rho_difference(res["layer_sum"], res[key_], res["gold"], seed=seed, resamples=resamples)
                if diff is not None:
                    versus[name] = {"difference": diff[0], "interval": list(diff[1])}
        a.detail["versus_baselines"] = versus
        summary.append(a)
        layers = res.get("layers") or ["?", "?"]
        rows.append([dataset, model, fmt(res.get("n_pairs")), f"{layers[0]}–{layers[-1]}", fmt(a.statistic), fmt(res.get("p_value"), 2), fmt_ci(a),
                     _best(res.get("per_layer_spearman")), _baseline(res, "hidden"), _versus(versus, "hidden"), _best(res.get("hidden_per_layer_spearman")),
                     _baseline(res, "tfidf"), _versus(versus, "tfidf"), a.label])
    lines = ["**Verdicts:** " + "; ".join(f"{a.claim}: {a.label}" for a in summary), "", rests_on(
        "each row's model, STS data, pair count and layer range (0-indexed, inclusive) as listed; "
        + ", ".join(f"{r.name} ({r.path})" for r in sts_runs)
        + f". Interval: bootstrap over sentence pairs of ρ(layer_sum, gold); held if ρ > 0 and p < {F.ALPHA}."
    ), ""]
    lines += table(["data", "model", "pairs", "layers", "ρ", "p", "95 % interval", "best single layer ρ", "hidden-state ρ", "ρ − hidden ρ [95 %]",
                    "hidden best layer", "TF-IDF ρ", "ρ − TF-IDF ρ [95 %]", "verdict"], rows)
    lines += ["Baselines (when the run holds them) carry no verdict: hidden-state cosine summed over the same layers, TF-IDF cosine of the two sentences.", ""]
    return Section(key, title, summary, lines, list(summary), [f for r in sts_runs for f in r.figures() if f.name == "sts_layers.png"])


def allpairs(runs: Sequence[Run]) -> Section:
    """All-pairs similarity runs: descriptive (per-layer ρ of LLMDcos and baselines), no verdict."""
    key, title = "allpairs", "All-pairs similarity (descriptive)"
    ap_runs = [r for r in runs if "allpairs" in r.data]
    if not ap_runs:
        return not_run_section(key, title, "no all-pairs run among the inputs (allpairs.json)", descriptive=True)
    lines: list[str] = []
    for run in ap_runs:
        res = run.data["allpairs"]
        if not isinstance(res, dict):
            lines += [f"{run.name} ({run.path}): cannot assess: allpairs.json is not an object.", ""]
            continue
        about = ", ".join(f"{k} {res[k]}" for k in ("model", "dataset", "datasets", "n_pairs", "n_samples", "layers") if k in res)
        series = {k: v for k, v in res.items() if "spearman" in k and isinstance(v, list) and all(isinstance(x, (int, float)) or x is None for x in v)}
        scalars = {k: v for k, v in res.items() if ("spearman" in k or "p_value" in k) and isinstance(v, (int, float))}
        lines += [f"### {run.name} ({run.path})", "", rests_on(about or "allpairs.json"), ""]
        if not series and not scalars:
            lines += ["Cannot assess: allpairs.json holds no Spearman values (keys " + ", ".join(res) + ").", ""]
            continue
        lines += table(["quantity", "value"], [[k, _best(v) + " best of per-layer"] for k, v in series.items()] + [[k, fmt(v)] for k, v in scalars.items()])
    a = F.Assessment("All-pairs similarity", "descriptive", reason="no verdict defined")
    return Section(key, title, [], lines, [a], [f for r in ap_runs for f in r.figures()])


# ---------------------------------------------------------------------------------------------
# Validations 1 and 2: pruning


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def validation1(runs: Sequence[Run]) -> Section:
    """Validation 1: per sparsity and metric, the activation allocation's perplexity over seeds against
    uniform's; beyond the paper, which allocation + metric wins each sparsity."""
    key, title = "validation1", "Validation 1: activation-guided layer sparsity beats uniform (perplexity)"
    cmp_runs = [r for r in runs if "compare" in r.data]
    if not cmp_runs:
        return not_run_section(key, title, "no compare run among the inputs (results.csv; `lit-activation compare --config configs/compare_embedded.yaml`)")
    lines, summary, parts = [], [], []
    for run in cmp_runs:
        data = run.data["compare"]
        missing = [c for c in COMPARE_COLUMNS if c not in data["header"]]
        if missing or not data["rows"]:
            why = f"results.csv in {run.path} lacks columns {missing}" if missing else f"results.csv in {run.path} has no runs"
            summary.append(F.cannot(f"Validation 1 ({run.name})", why))
            continue
        fixed = (data["comparison"] or {}).get("fixed", {})
        model = fixed.get("model", "?")
        groups: dict[tuple[float, str, str], list[float]] = defaultdict(list)
        for r in data["rows"]:  # results.csv of before the metric column: every run used Wanda
            groups[(_float(r["sparsity"]), r["method"], r.get("pruning_metric") or fixed.get("metric", "wanda"))].append(_float(r["perplexity"]))
        sparsities = sorted({s for s, m, _ in groups if m != "dense"})
        methods = list(dict.fromkeys(m for _, m, _ in groups if m not in ("dense", "uniform")))
        metrics = list(dict.fromkeys(k for _, m, k in groups if m != "dense"))
        headline = "wanda" if "wanda" in metrics else (metrics[0] if metrics else "?")  # the paper's metric decides the claim
        rows, activation, winners, frontier = [], [], [], []
        for s in sparsities:
            for metric in metrics:
                uniform = groups.get((s, "uniform", metric), [])
                for m in ["uniform", *methods]:
                    values = groups.get((s, m, metric), [])
                    if not values:
                        continue
                    mean, std, n = F.mean_std(values)
                    a = None if m == "uniform" else F.versus_uniform(f"Validation 1, {model}, {m} vs uniform ({metric}) at {s:g}", values, uniform)
                    if a is not None:
                        a.detail.update(method=m, metric=metric, sparsity=s)
                        parts.append(a)
                        if m == "activation" and metric == headline:
                            activation.append(a)
                    rows.append([f"{s:.0%}", m, metric, f"{fmt(mean, 4)} ± {fmt(std, 2)}", n, fmt(a.statistic, 3) if a else "–",
                                 fmt(a.detail["spread"], 3) if a else "–", a.label if a else "(reference)"])
            points = {f"{m} + {k}": v for (ps, m, k), v in groups.items() if ps == s and m != "dense"}
            w = F.frontier_winner(f"Beyond the paper, {model}: the best allocation + metric at {s:g} leads beyond the seed spread", points)
            w.detail.update(sparsity=s)
            parts.append(w)
            winners.append(w)
            d = w.detail
            frontier.append([f"{s:.0%}", d.get("winner", "–"), f"{fmt(d['mean'], 4)} ± {fmt(d['std'], 2)}" if "mean" in d else "–",
                             d.get("runner_up", "–"), fmt(w.statistic, 3) if w.statistic is not None else "–",
                             fmt(d["spread"], 3) if "spread" in d else "–", w.label])
        calib = fixed.get("calibration") or {}
        dense = groups.get((0.0, "dense", "-")) or next((v for (ps, m, _), v in groups.items() if m == "dense"), None)
        lines += [f"### {model} ({run.name})", "", rests_on(
            f"model {model}; perplexity {fixed.get('evaluation', (data['rows'][0].get('metric') or '?'))}; calibration "
            f"{calib.get('dataset', '?')} ({calib.get('samples', '?')} × {calib.get('seqlen', '?')} tokens); metrics {', '.join(metrics)}; "
            f"sparsities {', '.join(f'{s:g}' for s in sparsities)}; seeds per point as listed; {run.path}."
            + (f" Dense perplexity {fmt(F.mean_std(dense)[0], 4)}." if dense else "")
        ), ""]
        lines += table(["sparsity", "allocation", "metric", "perplexity mean ± std", "seeds", "diff vs uniform", "std + std", "verdict"], rows)
        if frontier:
            lines += ["", "Beyond the paper: the winner per sparsity (lowest mean perplexity over every allocation + metric), its lead "
                      "over the runner-up and whether the lead exceeds the two seed spreads:", ""]
            lines += table(["sparsity", "winner", "perplexity mean ± std", "runner-up", "lead", "std + std", "lead beyond the spread"], frontier)
        claim = (
            f"Validation 1 ({model}, calibration {calib.get('dataset', '?')}, metric {headline}, {run.name}): "
            "activation allocation beats uniform, every sparsity"
        )
        why = f"no 'activation' runs in results.csv (methods {', '.join(methods) or 'none'})"
        summary.append(F.combine(claim, activation) if activation else F.cannot(claim, why))
        if any(w.verdict != F.CANNOT for w in winners):
            summary.append(F.combine(f"Beyond the paper ({model}, {run.name}): each sparsity's best allocation + metric leads beyond the seed spread", winners))
    head = ["**Verdicts:** " + "; ".join(f"{a.claim}: {a.label}" for a in summary), ""]
    return Section(key, title, summary, head + lines, parts, [f for r in cmp_runs for f in r.figures() if f.name == "compare.png"])


def _zero_shot_records(runs: Sequence[Run]) -> tuple[list[dict], list[str]]:
    """Pruned runs with accuracies: {model, protocol, method, sparsity, seed, calibration, results, source}."""
    records, notes = [], []
    for run in runs:
        if "compare" in run.data:
            data = run.data["compare"]
            fixed = (data["comparison"] or {}).get("fixed", {})
            with_acc = [r for r in data["rows"] if r.get("zeroshot") not in (None, "", "{}") and r.get("method") != "dense"]
            if with_acc and not fixed.get("calibration"):
                notes.append(f"{run.path}: comparison.json missing or without calibration: its zero-shot rows are left out")
                continue
            for r in with_acc:
                try:
                    results = json.loads(r["zeroshot"])
                except json.JSONDecodeError:
                    notes.append(f"{run.path}: a zeroshot cell is not JSON")
                    continue
                metric = r.get("pruning_metric") or "wanda"  # runs of another metric are other methods
                method = r["method"] if metric == "wanda" else f"{r['method']} + {metric}"
                records.append({
                    "model": fixed.get("model", "?"), "protocol": (fixed.get("zeroshot") or {}).get("protocol", "?"), "method": method,
                    "sparsity": _float(r["sparsity"]), "seed": r.get("seed"), "calibration": fixed["calibration"].get("dataset", "?"),
                    "results": results, "source": run.name,
                })
        if "zeroshot" in run.data and "pruning" in run.data:
            zs, pr = run.data["zeroshot"], run.data["pruning"]
            if pr.get("target_sparsity", 0) and isinstance(zs.get("results"), dict):
                calib = pr.get("calibration") or {}
                records.append({
                    "model": pr.get("model", "?"), "protocol": zs.get("protocol", "?"), "method": pr.get("method", "?"),
                    "sparsity": _float(pr.get("target_sparsity")), "seed": calib.get("seed"), "calibration": calib.get("dataset", "?"),
                    "results": zs["results"], "source": run.name,
                })
    return records, notes


def _stderr(metrics: dict) -> float | None:
    """lm-eval's acc_stderr, else a binomial one from an item count when the protocol records it."""
    if isinstance(metrics.get("acc_stderr"), (int, float)):
        return float(metrics["acc_stderr"])
    n = next((metrics[k] for k in ("n", "n_items", "samples", "limit") if isinstance(metrics.get(k), (int, float)) and metrics[k] > 0), None)
    acc = metrics.get("acc")
    return math.sqrt(acc * (1 - acc) / n) if n and isinstance(acc, (int, float)) and 0 <= acc <= 1 else None


def validation2(runs: Sequence[Run]) -> Section:
    """Validation 2: a model pruned with calibration set C does better on task C than one calibrated on another set."""
    key, title = "validation2", "Validation 2: the calibration set's own task gains (zero-shot accuracy)"
    records, notes = _zero_shot_records(runs)
    if not records:
        why = "no pruned runs with zero-shot accuracies among the inputs (compare results.csv `zeroshot` column, or zeroshot.json + pruning.json)"
        return not_run_section(key, title, why + "".join(f"; note: {n}" for n in notes))
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:  # only like with like: same model, protocol, method and sparsity
        groups[(rec["model"], rec["protocol"], rec["method"], rec["sparsity"])][rec["calibration"]].append(rec)
    lines, summary, parts = [], [], []
    for (model, protocol, method, sparsity), by_calib in groups.items():
        claim = f"Validation 2 ({model}, {method} {sparsity:g}, {protocol})"
        calibs = sorted(by_calib)
        acc_rows = []
        for c in calibs:
            tasks = sorted({t for rec in by_calib[c] for t in rec["results"]})
            for t in tasks:
                values = [rec["results"][t].get("acc") for rec in by_calib[c] if t in rec["results"]]
                values = [v for v in values if isinstance(v, (int, float))]
                if values:
                    m, s, n = F.mean_std(values)
                    acc_rows.append([c, t, f"{fmt(m, 4)} ± {fmt(s, 2)}", n])
        comparisons = []
        for c in calibs:
            for o in calibs:
                if o == c:
                    continue
                mine = [rec["results"][c] for rec in by_calib[c] if isinstance(rec["results"].get(c, {}).get("acc"), (int, float))]
                theirs = [rec["results"][c] for rec in by_calib[o] if isinstance(rec["results"].get(c, {}).get("acc"), (int, float))]
                if not mine or not theirs:
                    continue  # task c not evaluated (or c is not a task, e.g. c4)
                a = F.calibration_advantage(
                    f"{claim}: task {c}, calibrated on {c} vs {o}",
                    F.accuracy([x["acc"] for x in mine], [_stderr(x) for x in mine]),
                    F.accuracy([x["acc"] for x in theirs], [_stderr(x) for x in theirs]),
                )
                a.detail.update(task=c, calibration=c, other=o)
                comparisons.append(a)
        lines += [f"### {model}, {method} at {sparsity:g}, zero-shot protocol {protocol}", "", rests_on(
            f"calibration sets {', '.join(calibs)}; runs from {', '.join(sorted({r['source'] for v in by_calib.values() for r in v}))}; accuracy `acc`. "
            f"Interval: difference ± {F.Z95:.2f}·√(se₁² + se₂²), se from lm-eval's stderr and the seed spread."
        ), ""]
        lines += table(["calibration", "task", "acc mean ± std", "seeds"], acc_rows)
        if comparisons:
            lines += table(["task = calibration", "other calibration", "diff", "95 % interval", "verdict"],
                           [[a.detail["task"], a.detail["other"], fmt(a.statistic), fmt_ci(a), a.label] for a in comparisons])
            summary.append(F.combine(f"{claim}: each calibration set helps its own task", comparisons))
        else:
            why = "needs runs with ≥ 2 calibration sets, one of them a task evaluated on both" if len(calibs) < 2 else \
                f"no calibration set ({', '.join(calibs)}) is among the evaluated tasks of the other"
            summary.append(F.cannot(claim, why))
        parts += comparisons
    lines += [f"Note: {n}." for n in notes] + ([""] if notes else [])
    head = ["**Verdicts:** " + "; ".join(f"{a.claim}: {a.label}" for a in summary), ""]
    return Section(key, title, summary, head + lines, parts)


def zero_shot_runs(runs: Sequence[Run]) -> Section:
    """Every zeroshot.json, with its protocol (lm-eval or the paper's scorer): descriptive."""
    key, title = "zeroshot", "Zero-shot runs"
    zs_runs = [r for r in runs if "zeroshot" in r.data]
    if not zs_runs:
        return not_run_section(key, title, "no zeroshot.json among the inputs", descriptive=True)
    rows = []
    for run in zs_runs:
        zs = run.data["zeroshot"]
        pr = run.data.get("pruning") or {}
        for task, metrics in (zs.get("results") or {}).items():
            rows.append([run.name, zs.get("protocol", "?"), pr.get("method", "–"), fmt(pr.get("target_sparsity")),
                         (pr.get("calibration") or {}).get("dataset", "–"), task, fmt((metrics or {}).get("acc"), 4), fmt((metrics or {}).get("acc_norm"), 4)])
    header = ["run", "protocol", "method", "sparsity", "calibration", "task", "acc", "acc_norm"]
    lines = table(header, rows) if rows else ["Cannot assess: no results in zeroshot.json.", ""]
    return Section(key, title, [], lines, [F.Assessment("Zero-shot runs", "descriptive")])


# ---------------------------------------------------------------------------------------------
# writing


def next_version(parent: Path) -> Path:
    """Create and return parent/version_N, N one above the highest there (claimed atomically by mkdir)."""
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = parent / f"version_{max((n for n, _ in versions(parent)), default=-1) + 1}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another report took it meanwhile
            continue


def _link(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def render(sections: Sequence[Section], runs: Sequence[Run], out: Path, seed: int, resamples: int) -> str:
    """The whole report.md."""
    lines = ["# Findings report", "", (
        f"Statistics and verdicts as defined in {DEFINITIONS} (and `lit_activation/findings.py`). Intervals: 95 % percentile bootstrap, "
        f"{resamples} resamples, seed {seed}. Layers are 0-indexed (layer 0 = the paper's layer 1). Verdicts: held / not held / inconclusive; "
        "\"not run\" when no input speaks to a claim, \"cannot assess\" when an input lacks what the claim needs."
    ), "", "## Inputs", ""]
    lines += table(["run", "directory", "holds"], [[r.name, r.path, ", ".join(sorted(r.data))] for r in runs])
    lines += ["## Summary", ""]
    lines += table(["claim", "verdict", "parts", "statistic", "95 % interval"],
                   [[a.claim, a.label, tally(a) or "–", fmt(a.statistic), fmt_ci(a)] for s in sections for a in s.summary])
    for s in sections:
        lines += [f"## {s.title}", "", *s.lines]
        for fig in s.figures:
            lines += [f"![{fig.parent.name}/{fig.name}]({_link(fig, out)})", ""]
    return "\n".join(lines).rstrip() + "\n"


def build(runs: Sequence[Run], seed: int, resamples: int) -> list[Section]:
    """Every section, in the paper's order."""
    return [
        finding1(runs, seed, resamples), finding2(runs, seed, resamples), finding3(runs, seed, resamples),
        validation1(runs), validation2(runs), validation3(runs, seed, resamples), allpairs(runs), zero_shot_runs(runs),
    ]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage: the CLI turns it into one `error:` line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(f"report: {message}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(prog="lit-activation report", description="One Markdown/JSON report of the paper's findings from finished runs.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run dirs (runs/NAME/version_N), logger dirs (runs/NAME: newest run) or compare dirs")
    parser.add_argument("--output", default="runs/report", help="parent directory; the report goes to OUTPUT/version_N (never overwritten)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap generator")
    parser.add_argument("--resamples", type=int, default=F.RESAMPLES, help="bootstrap resamples per interval (>= 100)")
    args = parser.parse_args(list(argv))
    if args.resamples < 100:
        raise ValueError(f"--resamples must be >= 100 for a 95 % interval, got {args.resamples}")
    return args


def main(argv: Sequence[str]) -> Path:
    """Read the run dirs, write OUTPUT/version_N/report.md and report.json; print the report's path last."""
    args = parse_args(argv)
    runs = [load_run(i, Path(p)) for i, p in enumerate(args.run_dirs, 1)]  # every input checked before any work
    sections = build(runs, args.seed, args.resamples)
    out = next_version(Path(args.output))
    report = io.write_text(out / "report.md", render(sections, runs, out, args.seed, args.resamples))
    io.write_json(out / "report.json", {
        "settings": {"seed": args.seed, "resamples": args.resamples, "confidence": F.CONFIDENCE, "definitions": DEFINITIONS},
        "inputs": [{"run": r.name, "path": str(r.path), "holds": sorted(r.data), "figures": [str(f) for f in r.figures()]} for r in runs],
        "summary": [a.as_dict() for s in sections for a in s.summary],
        "sections": {s.key: {"title": s.title, "summary": [a.as_dict() for a in s.summary], "parts": [a.as_dict() for a in s.parts]} for s in sections},
    })
    for s in sections:
        for a in s.summary:
            print(f"{a.claim}: {a.label}")
    print(report)
    return report
