"""Finding 1 in the report: do activated-parameter counts concentrate in shallow layers; corpora vs task sets deep."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from lit_activation.report import findings
from lit_activation.report.markdown import Section, fmt, fmt_ci, not_run_section, rests_on, table, verdicts
from lit_activation.report.runs import Missing, Run, dataset_kind, need


def _count_profiles(run: Run, clash: set[str]) -> tuple[str, dict[str, dict], dict[str, dict[str, list[float]]], list[str]]:
    """(model, {dataset: info}, {threshold label: {dataset: layer counts}}, notes) of one counts run.

    A dataset also scored by another input run (`clash`) is labelled with its run: both are kept.
    """
    res = run.data["counts"]
    where = f"counts.json in {run.path}"
    datasets = need(res, "datasets", where)
    gamma = need(res, "gamma", where)
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


def _finding1_model(model: str, group: dict, seed: int, resamples: int) -> tuple[list[str], list[findings.Assessment], list[findings.Assessment]]:
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
            a = findings.count_profile(f"Finding 1, {model}, {name}, {label}", counts, seed=seed, resamples=resamples)
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
        b = findings.corpora_deep(f"Finding 1b, {model}, {label}", corpora, tasks, seed=seed, resamples=resamples)
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
        findings.combine(f"Finding 1 ({model}): counts concentrate in shallow layers, every dataset and threshold", shallow_parts),
        findings.combine(claim_b, corpus_parts) if {"corpus", "task"} <= kinds else findings.not_run(
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
        except Missing as err:
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
        summary.append(findings.cannot("Finding 1", "; ".join(notes)))
    lines += [f"Note: {n}." for n in notes] + ([""] if notes else [])
    head = [f"**Verdict: {summary[0].label}.**", ""] if len(summary) == 1 else verdicts(summary)
    return Section(key, title, summary, head + lines, parts, [f for r in counts_runs for f in r.figures() if f.name == "counts.png"])
