"""Validation 1 in the report: each allocation's perplexity against uniform's, over seeds; beyond the paper, the winner."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from lit_activation.report import findings
from lit_activation.report.markdown import Section, fmt, not_run_section, rests_on, table, verdicts
from lit_activation.report.runs import Run, as_float

COMPARE_COLUMNS = ("method", "sparsity", "seed", "perplexity")  # results.csv's columns that Validation 1 needs


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
            summary.append(findings.cannot(f"Validation 1 ({run.name})", why))
            continue
        fixed = (data["comparison"] or {}).get("fixed", {})
        model = fixed.get("model", "?")
        groups: dict[tuple[float, str, str], list[float]] = defaultdict(list)
        for r in data["rows"]:  # results.csv of before the metric column: every run used Wanda
            groups[(as_float(r["sparsity"]), r["method"], r.get("pruning_metric") or fixed.get("metric", "wanda"))].append(as_float(r["perplexity"]))
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
                    mean, std, n = findings.mean_std(values)
                    a = None if m == "uniform" else findings.versus_uniform(f"Validation 1, {model}, {m} vs uniform ({metric}) at {s:g}", values, uniform)
                    if a is not None:
                        a.detail.update(method=m, metric=metric, sparsity=s)
                        parts.append(a)
                        if m == "activation" and metric == headline:
                            activation.append(a)
                    rows.append([f"{s:.0%}", m, metric, f"{fmt(mean, 4)} ± {fmt(std, 2)}", n, fmt(a.statistic, 3) if a else "–",
                                 fmt(a.detail["spread"], 3) if a else "–", a.label if a else "(reference)"])
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
        claim = (
            f"Validation 1 ({model}, calibration {calib.get('dataset', '?')}, metric {headline}, {run.name}): "
            "activation allocation beats uniform, every sparsity"
        )
        why = f"no 'activation' runs in results.csv (methods {', '.join(methods) or 'none'})"
        summary.append(findings.combine(claim, activation) if activation else findings.cannot(claim, why))
        if any(w.verdict != findings.CANNOT for w in winners):
            claim_winners = f"Beyond the paper ({model}, {run.name}): each sparsity's best allocation + metric leads beyond the seed spread"
            summary.append(findings.combine(claim_winners, winners))
    head = verdicts(summary)
    return Section(key, title, summary, head + lines, parts, [f for r in cmp_runs for f in r.figures() if f.name == "compare.png"])
