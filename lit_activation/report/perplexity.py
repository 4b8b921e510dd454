"""Validation 1 in the report: each allocation's perplexity against uniform's, over seeds, per within-layer
method; beyond the paper, the winner of each sparsity, and SparseGPT against Wanda."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from lit_activation.report import findings
from lit_activation.report.experts import EXPERTS
from lit_activation.report.markdown import Section, fmt, not_run_section, rests_on, table, verdicts
from lit_activation.report.runs import Run, as_float

COMPARE_COLUMNS = ("method", "sparsity", "seed", "perplexity")  # results.csv's columns that Validation 1 needs
PAIR = ("sparsegpt", "wanda")  # the within-layer methods compared head to head, each allocation and sparsity


def validation1(runs: Sequence[Run]) -> Section:
    """Validation 1: per sparsity and metric, the activation allocation's perplexity over seeds against
    uniform's, a verdict per metric (the paper's, Wanda, first); beyond the paper, which allocation +
    metric wins each sparsity, and whether SparseGPT or Wanda gives the lower perplexity per
    allocation and sparsity."""
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
            summary.append(findings.cannot(f"Validation 1 ({run.name})", why))
            continue
        fixed = (data["comparison"] or {}).get("fixed", {})
        model = fixed.get("model", "?")
        groups: dict[tuple[float, str, str], list[float]] = defaultdict(list)
        for r in data["rows"]:  # results.csv of before the metric column: every run used Wanda
            if r["method"] == EXPERTS:
                continue  # whole experts removed: their own section (report/experts.py)
            groups[(as_float(r["sparsity"]), r["method"], r.get("pruning_metric") or fixed.get("metric", "wanda"))].append(as_float(r["perplexity"]))
        sparsities = sorted({s for s, m, _ in groups if m != "dense"})
        methods = list(dict.fromkeys(m for _, m, _ in groups if m not in ("dense", "uniform")))
        metrics = list(dict.fromkeys(k for _, m, k in groups if m != "dense"))
        headline = "wanda" if "wanda" in metrics else (metrics[0] if metrics else "?")  # the paper's metric decides the claim
        rows, winners, frontier = [], [], []
        activation: dict[str, list[findings.Assessment]] = {metric: [] for metric in metrics}
        for s in sparsities:
            for metric in metrics:
                uniform = groups.get((s, "uniform", metric), [])
                for m in ["uniform", *methods]:
                    values = groups.get((s, m, metric), [])
                    if not values:
                        continue
                    mean, std, n = findings.mean_std(values)
                    a = None if m == "uniform" else findings.versus_uniform(f"Validation 1, {model}, {m} vs uniform ({metric}) at {s:g}", values, uniform)
                    if a is not None:
                        a.detail.update(method=m, metric=metric, sparsity=s)
                        parts.append(a)
                        if m == "activation":
                            activation[metric].append(a)
                    assessed = a is not None and "spread" in a.detail  # not when uniform has no run with this metric
                    rows.append([f"{s:.0%}", m, metric, f"{fmt(mean, 4)} ± {fmt(std, 2)}", n, fmt(a.statistic, 3) if assessed else "–",
                                 fmt(a.detail["spread"], 3) if assessed else "–", a.label if a else "(reference)"])
            points = {f"{m} + {k}": v for (ps, m, k), v in groups.items() if ps == s and m != "dense"}
            w = findings.frontier_winner(f"Beyond the paper, {model}: the best allocation + metric at {s:g} leads beyond the seed spread", points)
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
            + (f" Dense perplexity {fmt(findings.mean_std(dense)[0], 4)}." if dense else "")
        ), ""]
        lines += table(["sparsity", "allocation", "metric", "perplexity mean ± std", "seeds", "diff vs uniform", "std + std", "verdict"], rows)
        if frontier:
            lines += ["", "Beyond the paper: the winner per sparsity (lowest mean perplexity over every allocation + metric), its lead "
                      "over the runner-up and whether the lead exceeds the two seed spreads:", ""]
            lines += table(["sparsity", "winner", "perplexity mean ± std", "runner-up", "lead", "std + std", "lead beyond the spread"], frontier)
        pair, pair_rows = metric_pair(model, groups, sparsities, ["uniform", *methods])
        parts += pair
        if pair_rows:
            lines += ["", f"Beyond the paper: {PAIR[0]} or {PAIR[1]}, with the same allocation, sparsity and calibration seeds (held: "
                      f"{PAIR[0]} lower beyond the two seed spreads; not held: {PAIR[1]} lower beyond them):", ""]
            lines += table(["sparsity", "allocation", f"{PAIR[0]} mean ± std", f"{PAIR[1]} mean ± std", "diff", "std + std", "lower", "verdict"], pair_rows)
        for metric in [headline, *(k for k in metrics if k != headline)]:  # the paper's metric decides the paper's claim: first
            claim = (
                f"Validation 1 ({model}, calibration {calib.get('dataset', '?')}, metric {metric}, {run.name}): "
                "activation allocation beats uniform, every sparsity"
            )
            if activation.get(metric):
                summary.append(findings.combine(claim, activation[metric]))
            elif metric == headline:
                summary.append(findings.cannot(claim, f"no 'activation' runs in results.csv (methods {', '.join(methods) or 'none'})"))
        if any(w.verdict != findings.CANNOT for w in winners):
            claim_winners = f"Beyond the paper ({model}, {run.name}): each sparsity's best allocation + metric leads beyond the seed spread"
            summary.append(findings.combine(claim_winners, winners))
        if pair:
            claim_pair = f"Beyond the paper ({model}, {run.name}): {PAIR[0]} gives a lower perplexity than {PAIR[1]}, every allocation and sparsity"
            summary.append(findings.combine(claim_pair, pair))
    head = verdicts(summary)
    return Section(key, title, summary, head + lines, parts, [f for r in cmp_runs for f in r.figures() if f.name == "compare.png"])


def metric_pair(
    model: str, groups: dict[tuple[float, str, str], list[float]], sparsities: list[float], allocations: list[str]
) -> tuple[list[findings.Assessment], list[list]]:
    """PAIR[0] against PAIR[1] for every allocation and sparsity that has runs of both: the assessments
    and their table rows."""
    first, second = PAIR
    parts, rows = [], []
    for s in sparsities:
        for allocation in allocations:
            a_values, b_values = groups.get((s, allocation, first), []), groups.get((s, allocation, second), [])
            if not (a_values and b_values):
                continue
            a = findings.versus_metric(f"Beyond the paper, {model}, {first} vs {second} ({allocation}) at {s:g}", a_values, b_values)
            a.detail.update(method=allocation, metric=first, baseline_metric=second, sparsity=s)
            parts.append(a)
            lower = {findings.HELD: first, findings.NOT_HELD: second}.get(a.verdict, "–")
            (ma, sa, _), (mb, sb, _) = findings.mean_std(a_values), findings.mean_std(b_values)
            rows.append([f"{s:.0%}", allocation, f"{fmt(ma, 4)} ± {fmt(sa, 2)}", f"{fmt(mb, 4)} ± {fmt(sb, 2)}", fmt(a.statistic, 3),
                         fmt(a.detail["spread"], 3), lower, a.label])
    return parts, rows
