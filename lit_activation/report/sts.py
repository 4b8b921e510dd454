"""Validation 3 in the report (LLMDcos against STS gold scores) and the descriptive all-pairs runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lit_activation.report import findings
from lit_activation.report.markdown import Section, fmt, fmt_ci, not_run_section, rests_on, table, verdicts
from lit_activation.report.runs import Run


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
        a = findings.sts_correlation(claim, res.get("spearman"), res.get("p_value"), res.get("layer_sum"), res.get("gold"), seed=seed, resamples=resamples)
        if res.get("layer_sum") is None or res.get("gold") is None:
            a.reason = a.reason or "sts.json lacks gold/layer_sum: no interval"
        scalar = {k: v for k, v in res.items() if k.startswith(("hidden", "tfidf")) and not isinstance(v, list)}
        a.detail.update(model=model, dataset=dataset, layers=res.get("layers"), n_pairs_file=res.get("n_pairs"), baselines=scalar)
        versus = {}  # LLMDcos ρ minus each baseline's, paired over sentence pairs, when the run stored per-pair values
        for name, key_ in (("hidden", "hidden_layer_sum"), ("tfidf", "tfidf")):
            if isinstance(res.get(key_), list) and isinstance(res.get("layer_sum"), list) and isinstance(res.get("gold"), list):
                diff = findings.rho_difference(res["layer_sum"], res[key_], res["gold"], seed=seed, resamples=resamples)
                if diff is not None:
                    versus[name] = {"difference": diff[0], "interval": list(diff[1])}
        a.detail["versus_baselines"] = versus
        summary.append(a)
        layers = res.get("layers") or ["?", "?"]
        rows.append([dataset, model, fmt(res.get("n_pairs")), f"{layers[0]}–{layers[-1]}", fmt(a.statistic), fmt(res.get("p_value"), 2), fmt_ci(a),
                     _best(res.get("per_layer_spearman")), _baseline(res, "hidden"), _versus(versus, "hidden"), _best(res.get("hidden_per_layer_spearman")),
                     _baseline(res, "tfidf"), _versus(versus, "tfidf"), a.label])
    lines = verdicts(summary) + [rests_on(
        "each row's model, STS data, pair count and layer range (0-indexed, inclusive) as listed; "
        + ", ".join(f"{r.name} ({r.path})" for r in sts_runs)
        + f". Interval: bootstrap over sentence pairs of ρ(layer_sum, gold); held if ρ > 0 and p < {findings.ALPHA}."
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
    a = findings.Assessment("All-pairs similarity", "descriptive", reason="no verdict defined")
    return Section(key, title, [], lines, [a], [f for r in ap_runs for f in r.figures()])
