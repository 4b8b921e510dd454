"""Beyond the paper, in a mixture of experts: do the experts' activated parameters separate the datasets more than routing does?"""

from __future__ import annotations

from collections.abc import Sequence

from lit_activation.analyses.experts import separation
from lit_activation.report import findings
from lit_activation.report.markdown import Section, fmt, fmt_ci, rests_on, table, verdicts
from lit_activation.report.runs import Run

KEY, TITLE = "experts", "Experts: activated parameters separate the datasets more than routing does"


def layer_separations(datasets: dict) -> list[tuple[int, float, float, list[str]]]:
    """Per MoE layer with two or more datasets whose shares exist there: (layer, separation of activated
    shares, separation of token shares, the datasets). A dataset with no activated expert parameter in
    a layer has no activated share there and is left out of that layer."""
    layers: dict[int, dict[str, tuple[list[float], list[float]]]] = {}
    for name, d in datasets.items():
        for layer, t in ((d.get("experts") or {}).get("per_layer") or {}).items():
            tokens, activated = t.get("token_share"), t.get("activated_share")
            if tokens and activated and None not in tokens and None not in activated:
                layers.setdefault(int(layer), {})[name] = (activated, tokens)
    out = []
    for layer, per in sorted(layers.items()):
        if len(per) >= 2:
            out.append((layer, separation([a for a, _ in per.values()]), separation([t for _, t in per.values()]), sorted(per)))
    return out


def experts_section(runs: Sequence[Run], seed: int, resamples: int) -> Section | None:
    """The section, or None when no counts run among the inputs is of a mixture of experts."""
    moe = [r for r in runs if any("experts" in d for d in ((r.data.get("counts") or {}).get("datasets") or {}).values())]
    if not moe:
        return None
    summary, lines = [], []
    for run in moe:
        res = run.data["counts"]
        model = str(res.get("model", "?"))
        per_layer = layer_separations(res["datasets"])
        a = findings.experts_separation(
            f"Experts ({model}): activated parameters separate the datasets more than routing",
            [p[1] for p in per_layer], [p[2] for p in per_layer], seed=seed, resamples=resamples,
        )
        a.detail["run"] = str(run.path)
        summary.append(a)
        lines += [f"### {model}", "", rests_on(
            f"counts.json in {run.path} (γ = {fmt(res.get('gamma'))}); per MoE layer, each dataset's share of its tokens per expert "
            "(routing) and of its activated expert parameters (mean A > γ), compared across datasets by the mean total-variation "
            "distance over dataset pairs (0: the same distribution, 1: disjoint experts). Statistic: the mean over layers of "
            "activated minus routing; the interval resamples layers."
        ), ""]
        lines += table(
            ["layer", "datasets", "activated separation", "routing separation", "difference"],
            [[layer, ", ".join(names), fmt(act), fmt(route), fmt(act - route)] for layer, act, route, names in per_layer],
        )
        lines += [f"Mean difference {fmt(a.statistic)}, 95 % interval {fmt_ci(a)}: **{a.label}**.", ""]
    figures = [f for r in moe for f in r.figures() if f.name == "experts.png"]
    return Section(KEY, TITLE, summary, verdicts(summary) + lines, summary, figures)
