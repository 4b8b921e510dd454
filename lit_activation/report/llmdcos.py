"""Findings 2 and 3 in the report, from LLMDcos runs: similarity across depth, and each dataset's self-similarity."""

from __future__ import annotations

import math
from collections.abc import Sequence

from lit_activation.report import findings
from lit_activation.report.markdown import Section, fmt, fmt_ci, not_run_section, rests_on, table, verdicts
from lit_activation.report.runs import Missing, Run, need


def _pair_values(res: dict, x: str, y: str) -> list | None:
    table_ = res["llmdcos"]
    return table_.get(f"{x}-{y}", table_.get(f"{y}-{x}"))


def _llmdcos_input(run: Run) -> tuple[dict, list[str], int]:
    res = run.data["llmdcos"]
    where = f"llmdcos.json in {run.path}"
    names = list(need(res, "datasets", where))
    need(res, "llmdcos", where)
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
        except Missing as err:
            summary.append(findings.cannot(f"Finding 2 ({run.name})", str(err)))
            continue
        first, last = findings.thirds(n_layers)
        model = res.get("model", "?")
        cross, same, rows = [], [], []
        for i, x in enumerate(names):
            for y in names[i:]:
                values = _pair_values(res, x, y)
                claim = f"Finding 2, {model}, {x}-{y}"
                if values is None:
                    a = findings.cannot(claim, f"llmdcos.json has no pair {x}-{y}")
                else:
                    a = findings.depth_drop(claim, values, same_domain=x == y, seed=seed, resamples=resamples)
                a.detail["pair"] = f"{x}-{y}"
                (same if x == y else cross).append(a)
                rows.append([f"{x}-{y}", "same" if x == y else "cross", fmt(a.detail.get("n_pairs")), fmt(a.detail.get("first_mean")),
                             fmt(a.detail.get("last_mean")), fmt(a.statistic), fmt_ci(a), a.label])
        lines += [f"### {model} ({run.name})", "", rests_on(
            f"model {model}; datasets {', '.join(names)}; {res.get('n_pairs', '?')} sample pairs per dataset pair; {n_layers} layers, "
            f"first third {first[0] if first else '–'}–{first[-1] if first else '–'}, last third {last[0] if last else '–'}–{last[-1] if last else '–'}; "
            f"{run.path}. Intervals resample sample pairs; same-domain margin {findings.SAME_DOMAIN_MARGIN}."
        ), ""]
        lines += table(["pair", "domain", "pairs", "first-third mean", "last-third mean", "first − last", "95 % interval", "verdict"], rows)
        summary += [
            findings.combine(f"Finding 2 ({model}, {run.name}): cross-domain LLMDcos falls with depth, every pair", cross)
            if cross else findings.cannot(f"Finding 2 ({model}, {run.name}): cross-domain", "one dataset only: no cross-domain pair"),
            findings.combine(
                f"Finding 2 ({model}, {run.name}): same-domain LLMDcos flat or rising (falls ≤ {findings.SAME_DOMAIN_MARGIN}), every dataset", same
            ),
        ]
        parts += cross + same
    head = verdicts(summary)
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
            first, last = need(res, "matrix_layers", f"llmdcos.json in {run.path}")
        except Missing as err:
            summary.append(findings.cannot(f"Finding 3 ({run.name})", str(err)))
            continue
        model = res.get("model", "?")
        layers = list(range(int(first), int(last) + 1))

        margins, rows = [], []
        stored = findings.diagonal_is_row_max(res["matrix"]) if res.get("matrix") else [None] * len(names)
        for i, x in enumerate(names):
            own = _pair_values(res, x, x)
            others = {y: _pair_values(res, x, y) for y in names if y != x}
            claim = f"Finding 3, {model}, {x}"
            if own is None or any(v is None for v in others.values()):
                a = findings.cannot(claim, f"llmdcos.json lacks a pair of {x}")
            else:
                a = findings.self_margin(claim, deep_mean(own, layers), {y: deep_mean(v, layers) for y, v in others.items()}, seed=seed, resamples=resamples)
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
        summary.append(findings.combine(claim, margins) if len(names) > 1 else findings.cannot(claim, "needs at least two datasets"))
        parts += margins
    head = verdicts(summary)
    return Section(key, title, summary, head + lines, parts, [f for r in llm_runs for f in r.figures() if f.name == "similarity_matrix.png"])
