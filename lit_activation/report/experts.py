"""Beyond the paper, in a mixture of experts: do the experts' activated parameters separate the datasets more than routing does?"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from lit_activation.report import findings
from lit_activation.report.markdown import Section, fmt, fmt_ci, rests_on, table, verdicts
from lit_activation.report.runs import Run, as_float

EXPERTS = "experts"  # results.csv's method of the runs that removed whole experts (pruning/comparison.py); no torch here
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
            out.append((layer, findings.separation([a for a, _ in per.values()]), findings.separation([t for _, t in per.values()]), sorted(per)))
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


REMOVAL_KEY, REMOVAL_TITLE = "expert_removal", "Removing experts: the experts' Taylor mass against routing's scores (perplexity)"
ACTIVATION_SCORE = "taylormass"  # the score from the experts' activated parameters; the others come from routing


def expert_removal(runs: Sequence[Run]) -> Section | None:
    """Per fraction of experts removed, each expert score's perplexity over seeds: the Taylor mass
    against every other score by the Validation 1 rule (lower beyond the two seed spreads, ≥ 2 seeds
    each), and the winner of each fraction; None when no compare run removed experts."""
    swept = [r for r in runs if "compare" in r.data and any(row["method"] == EXPERTS for row in r.data["compare"]["rows"])]
    if not swept:
        return None
    summary, parts, lines = [], [], []
    for run in swept:
        data = run.data["compare"]
        model = ((data["comparison"] or {}).get("fixed") or {}).get("model", "?")
        groups: dict[tuple[float, str], list[float]] = defaultdict(list)
        for row in data["rows"]:
            if row["method"] == EXPERTS:
                groups[(as_float(row["sparsity"]), row["pruning_metric"])].append(as_float(row["perplexity"]))
        ratios = sorted({ratio for ratio, _ in groups})
        scores = list(dict.fromkeys(score for _, score in groups))
        versus: dict[str, list[findings.Assessment]] = defaultdict(list)
        rows = []
        for ratio in ratios:
            mass = groups.get((ratio, ACTIVATION_SCORE), [])
            for score in scores:
                values = groups.get((ratio, score), [])
                mean, std, n = findings.mean_std(values) if values else (None, None, 0)
                a = None
                if score != ACTIVATION_SCORE and mass and values:
                    a = findings.lower_beyond_spread(
                        f"Removing experts, {model}: Taylor mass vs {score} at {ratio:g}", mass, values, score, "no runs of one of the two scores",
                    )
                    a.detail.update(ratio=ratio, score=score)
                    versus[score].append(a)
                    parts.append(a)
                rows.append([f"{ratio:.0%}", score, f"{fmt(mean, 4)} ± {fmt(std, 2)}" if values else "–", n,
                             fmt(a.statistic, 3) if a else "–", a.label if a else "(reference)" if score == ACTIVATION_SCORE else "–"])
            w = findings.frontier_winner(f"Removing experts, {model}: the best score at {ratio:g} leads beyond the seed spread",
                                         {score: groups.get((ratio, score), []) for score in scores})
            w.detail.update(ratio=ratio)
            parts.append(w)
        for score, assessed in versus.items():
            claim = f"Removing experts ({model}, {run.name}): the Taylor mass keeps a lower perplexity than {score}, every fraction"
            summary.append(findings.combine(claim, assessed))
        if not versus:
            summary.append(findings.cannot(f"Removing experts ({model}, {run.name}): the Taylor mass against routing's scores",
                                           f"no runs of both the Taylor mass and another score (scores {', '.join(scores)})"))
        lines += [f"### {model} ({run.name})", "", rests_on(
            f"results.csv in {run.path}: runs removing ⌊fraction · E⌋ experts of every MoE layer by each score, no weight pruned; "
            "perplexity mean ± std over calibration seeds. The rule is Validation 1's: a verdict only when the means differ by more "
            "than the two seed spreads added, with at least 2 seeds each."
        ), ""]
        lines += table(["experts removed", "score", "perplexity mean ± std", "seeds", "Taylor mass − score", "verdict"], rows)
    return Section(REMOVAL_KEY, REMOVAL_TITLE, summary, verdicts(summary) + lines, parts, [])
