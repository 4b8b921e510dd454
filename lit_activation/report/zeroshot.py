"""Validation 2 in the report (a calibration set's own task gains) and the zero-shot runs' accuracies."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence

from lit_activation.report import findings
from lit_activation.report.markdown import Section, fmt, fmt_ci, not_run_section, rests_on, table, verdicts
from lit_activation.report.runs import Run, as_float


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
                    "sparsity": as_float(r["sparsity"]), "seed": r.get("seed"), "calibration": fixed["calibration"].get("dataset", "?"),
                    "results": results, "source": run.name,
                })
        if "zeroshot" in run.data and "pruning" in run.data:
            zs, pr = run.data["zeroshot"], run.data["pruning"]
            if pr.get("target_sparsity", 0) and isinstance(zs.get("results"), dict):
                calib = pr.get("calibration") or {}
                records.append({
                    "model": pr.get("model", "?"), "protocol": zs.get("protocol", "?"), "method": pr.get("method", "?"),
                    "sparsity": as_float(pr.get("target_sparsity")), "seed": calib.get("seed"), "calibration": calib.get("dataset", "?"),
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
                    m, s, n = findings.mean_std(values)
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
                a = findings.calibration_advantage(
                    f"{claim}: task {c}, calibrated on {c} vs {o}",
                    findings.accuracy([x["acc"] for x in mine], [_stderr(x) for x in mine]),
                    findings.accuracy([x["acc"] for x in theirs], [_stderr(x) for x in theirs]),
                )
                a.detail.update(task=c, calibration=c, other=o)
                comparisons.append(a)
        lines += [f"### {model}, {method} at {sparsity:g}, zero-shot protocol {protocol}", "", rests_on(
            f"calibration sets {', '.join(calibs)}; runs from {', '.join(sorted({r['source'] for v in by_calib.values() for r in v}))}; accuracy `acc`. "
            f"Interval: difference ± {findings.Z95:.2f}·√(se₁² + se₂²), se from lm-eval's stderr and the seed spread."
        ), ""]
        lines += table(["calibration", "task", "acc mean ± std", "seeds"], acc_rows)
        if comparisons:
            lines += table(["task = calibration", "other calibration", "diff", "95 % interval", "verdict"],
                           [[a.detail["task"], a.detail["other"], fmt(a.statistic), fmt_ci(a), a.label] for a in comparisons])
            summary.append(findings.combine(f"{claim}: each calibration set helps its own task", comparisons))
        else:
            why = "needs runs with ≥ 2 calibration sets, one of them a task evaluated on both" if len(calibs) < 2 else \
                f"no calibration set ({', '.join(calibs)}) is among the evaluated tasks of the other"
            summary.append(findings.cannot(claim, why))
        parts += comparisons
    lines += [f"Note: {n}." for n in notes] + ([""] if notes else [])
    head = verdicts(summary)
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
    return Section(key, title, [], lines, [findings.Assessment("Zero-shot runs", "descriptive")])
