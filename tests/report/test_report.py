"""`lit-activation report`: verdicts on constructed runs whose answer is known, statistics by hand, seeded intervals.

Every input is written here, in the writers' layouts (callbacks/counts.py, callbacks/llmdcos.py,
callbacks/sts.py, lit_activation/comparison.py), with contents built to hold or built not to.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lit_activation import outputs
from lit_activation.cli import main as cli_main
from lit_activation.pruning.comparison import HEADER
from lit_activation.report import findings
from lit_activation.report import main as report_main

SEED, RESAMPLES = 0, 500  # fewer resamples than the default: fast, and still far from every boundary below


# ---------------------------------------------------------------------------------------------
# constructed run directories


def counts_run(path: Path, profiles: dict[str, list[int]], gamma: float = 2e-5) -> Path:
    """A counts run: each dataset's γ counts, and its q0.5 counts at half of them (same shape)."""
    n_layers = len(next(iter(profiles.values())))
    datasets = {
        name: {
            "n_samples": 64, "layer_counts": counts, "module_counts": {"mlp.down_proj": counts},
            "quantile_counts": {"q0.5": {"threshold": 1e-6, "layer_counts": [c // 2 for c in counts]}},
            "log10_histogram": {"lo": -9, "hi": -3, "counts": [[1] * 4] * n_layers, "zeros": [0] * n_layers},
            "mean_score_per_layer": [1e-6] * n_layers,
        }
        for name, counts in profiles.items()
    }
    outputs.write_json(path / "counts.json", {
        "model": "fake-llama", "target": "max_logit", "gamma": gamma, "n_layers": n_layers, "layer_params": [10_000] * n_layers, "datasets": datasets,
    })
    (path / "counts.png").write_bytes(b"\x89PNG fake")
    return path


def noisy(level: list[float], n: int, seed: int, noise: float = 0.01) -> list[list[float]]:
    """n sample pairs × layers: `level` per layer plus small uniform noise, inside [0, 1]."""
    rng = random.Random(seed)
    return [[min(1.0, max(0.0, v + rng.uniform(-noise, noise))) for v in level] for _ in range(n)]


def llmdcos_run(path: Path, per_pair: dict[str, list[list[float]]], datasets: list[str], matrix_layers: list[int] | None) -> Path:
    n_pairs, n_layers = len(next(iter(per_pair.values()))), len(next(iter(per_pair.values()))[0])
    layers = range(matrix_layers[0], matrix_layers[1] + 1) if matrix_layers else range(n_layers // 2, n_layers - 2)

    def entry(x: str, y: str) -> float:
        rows = per_pair.get(f"{x}-{y}", per_pair.get(f"{y}-{x}"))
        return sum(sum(r[i] for i in layers) / len(layers) for r in rows) / len(rows)

    record = {
        "model": "fake-llama", "datasets": datasets, "n_pairs": n_pairs, "n_layers": n_layers,
        "matrix": [[entry(x, y) for y in datasets] for x in datasets], "llmdcos": per_pair,
    }
    if matrix_layers:
        record["matrix_layers"] = matrix_layers
    outputs.write_json(path / "llmdcos.json", record)
    for png in ("llmdcos_box.png", "similarity_matrix.png"):
        (path / png).write_bytes(b"\x89PNG fake")
    return path


def sts_run(path: Path, sign: int, **extra) -> Path:
    rng = random.Random(3)
    gold = [i / 40 for i in range(40)]
    layer_sum = [sign * g * 5 + rng.uniform(-0.05, 0.05) for g in gold]
    result = stats.spearmanr(layer_sum, gold)
    outputs.write_json(path / "sts.json", {
        "model": "fake-llama", "dataset": "stsb", "n_pairs": len(gold), "layers": [6, 9], "spearman": float(result.statistic),
        "p_value": float(result.pvalue), "per_layer_spearman": [0.1, 0.2, 0.3], "gold": gold, "layer_sum": layer_sum, **extra,
    })
    return path


def compare_run(path: Path, perplexity: dict[str, list[float]], calibration: str = "c4", zeroshot: dict[str, dict] | None = None) -> Path:
    rows = [["dense", "-", 0.0, 0, 8.0, "ppl/wikitext2/test/seqlen64", 0.0, "{}", 1.0]]
    for method, values in perplexity.items():
        for seed, ppl in enumerate(values):
            rows.append([method, "wanda", 0.5, seed, ppl, "ppl/wikitext2/test/seqlen64", 0.5, json.dumps(zeroshot or {}), 1.0])
    outputs.write_csv(path / "results.csv", HEADER, rows)
    outputs.write_json(path / "comparison.json", {
        "fixed": {
            "model": "fake-llama", "evaluation": "ppl/wikitext2/test/seqlen64", "metric": "wanda",
            "calibration": {"dataset": calibration, "samples": 4, "seqlen": 32}, "zeroshot": {"protocol": "lm-evaluation-harness"},
        },
        "allocations": {}, "resolved_counts": {},
    })
    (path / "compare.png").write_bytes(b"\x89PNG fake")
    return path


L = 12
FALLING = {  # steeply falling with depth; the corpus stays higher in the deep half
    "boolq": [1200 - 100 * i for i in range(L)],
    "mmlu": [1300 - 105 * i for i in range(L)],
    "c4": [1250 - 40 * i for i in range(L)],
}
RISING = {  # rising with depth; the corpus lower in the deep half
    "boolq": [100 + 100 * i for i in range(L)],
    "mmlu": [120 + 110 * i for i in range(L)],
    "c4": [100 + 20 * i for i in range(L)],
}
N_PAIRS, DEPTH = 24, 9
DOWN = [0.8] * 3 + [0.5] * 3 + [0.2] * 3  # first third 0.8, last third 0.2
UP = DOWN[::-1]
FLAT = [0.6] * DEPTH


def holding_llmdcos(path: Path) -> Path:
    return llmdcos_run(path, {
        "boolq-boolq": noisy(FLAT, N_PAIRS, 1), "boolq-humaneval": noisy(DOWN, N_PAIRS, 2), "humaneval-humaneval": noisy(FLAT, N_PAIRS, 3),
    }, ["boolq", "humaneval"], [6, 8])


def failing_llmdcos(path: Path) -> Path:
    return llmdcos_run(path, {  # cross-domain rises; same-domain falls; in deep layers the other dataset is closer
        "boolq-boolq": noisy(DOWN, N_PAIRS, 1), "boolq-humaneval": noisy(UP, N_PAIRS, 2), "humaneval-humaneval": noisy(DOWN, N_PAIRS, 3),
    }, ["boolq", "humaneval"], [6, 8])


def make(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "runs" / name / "version_0"
    path.mkdir(parents=True)
    return path


def run_report(tmp_path: Path, *dirs: Path, seed: int = SEED) -> tuple[Path, dict]:
    path = report_main([*map(str, dirs), "--output", str(tmp_path / "reports"), "--seed", str(seed), "--resamples", str(RESAMPLES)])
    return path, json.loads((path.parent / "report.json").read_text())


def verdicts(record: dict, section: str) -> list[str]:
    return [a["verdict"] for a in record["sections"][section]["summary"]]


# ---------------------------------------------------------------------------------------------
# statistics against hand computation


def test_finding1_statistics_match_hand_computation():
    counts = [50, 900, 1000, 700, 650, 600, 300, 200, 100, 80]
    a = findings.count_profile("c", counts, seed=SEED, resamples=RESAMPLES)
    shallow, deep = counts[:5], counts[5:]
    ms, md = sum(shallow) / 5, sum(deep) / 5
    assert a.detail["peak_layer"] == 2
    assert a.detail["shallow_mean"] == pytest.approx(ms) and a.detail["deep_mean"] == pytest.approx(md)
    assert a.detail["ratio"] == pytest.approx((ms + 1) / (md + 1))
    assert a.statistic == pytest.approx(math.log((ms + 1) / (md + 1)))
    assert a.detail["first_layer_below_next_two"] is True
    assert a.interval[0] <= a.statistic <= a.interval[1]
    odd = findings.count_profile("c", [5, 4, 3, 99, 2, 1, 0], seed=SEED, resamples=RESAMPLES)  # odd depth: the middle layer is in neither half
    assert odd.detail["shallow_mean"] == pytest.approx(4.0) and odd.detail["deep_mean"] == pytest.approx(1.0)


def test_finding2_and_3_statistics_match_hand_computation():
    rows_cross, rows_self = noisy(DOWN, N_PAIRS, 2, noise=0.05), noisy(FLAT, N_PAIRS, 1, noise=0.05)
    a = findings.depth_drop("c", rows_cross, same_domain=False, seed=SEED, resamples=RESAMPLES)
    drops = [sum(r[:3]) / 3 - sum(r[6:]) / 3 for r in rows_cross]
    assert a.statistic == pytest.approx(sum(drops) / len(drops))
    assert a.detail["first_layers"] == [0, 2] and a.detail["last_layers"] == [6, 8]
    deep = [6, 7, 8]
    own = [sum(r[i] for i in deep) / 3 for r in rows_self]
    other = [sum(r[i] for i in deep) / 3 for r in rows_cross]
    m = findings.self_margin("c", own, {"x": other}, seed=SEED, resamples=RESAMPLES)
    assert m.statistic == pytest.approx(sum(own) / len(own) - sum(other) / len(other))


def test_sts_interval_centres_on_scipy_rho_and_ties_match_scipy():
    x, y = [1, 2, 2, 3, 5, 4, 7, 7, 9], [2, 1, 3, 3, 4, 6, 5, 8, 9]
    assert float(findings._rank_correlation(np.array(x, float), np.array(y, float))) == pytest.approx(stats.spearmanr(x, y).statistic)
    a = findings.sts_correlation("c", None, None, x, y, seed=SEED, resamples=RESAMPLES)
    assert a.statistic == pytest.approx(stats.spearmanr(x, y).statistic)
    assert a.detail["p_value"] == pytest.approx(stats.spearmanr(x, y).pvalue)


def test_seeded_bootstrap_is_reproducible():
    values = noisy(DOWN, N_PAIRS, 2, noise=0.3)
    one = findings.depth_drop("c", values, same_domain=False, seed=7, resamples=RESAMPLES)
    two = findings.depth_drop("c", values, same_domain=False, seed=7, resamples=RESAMPLES)
    other = findings.depth_drop("c", values, same_domain=False, seed=8, resamples=RESAMPLES)
    assert one.interval == two.interval
    assert other.interval != one.interval


def test_combine_is_held_only_when_every_part_is():
    held, no, unsure = (findings.Assessment("p", v) for v in (findings.HELD, findings.NOT_HELD, findings.INCONCLUSIVE))
    assert findings.combine("c", [held, held]).verdict == findings.HELD
    assert findings.combine("c", [held, unsure]).verdict == findings.INCONCLUSIVE
    assert findings.combine("c", [held, unsure, no]).verdict == findings.NOT_HELD
    assert findings.combine("c", [findings.cannot("p", "why")]).verdict == findings.CANNOT


# ---------------------------------------------------------------------------------------------
# verdicts on whole reports


def test_profiles_built_to_hold_are_held(tmp_path):
    dirs = [
        counts_run(make(tmp_path, "counts"), FALLING), holding_llmdcos(make(tmp_path, "llmdcos")),
        sts_run(make(tmp_path, "sts"), +1), compare_run(tmp_path / "compare", {"uniform": [10.0, 10.1, 9.9], "activation": [9.0, 9.1, 8.9]}),
    ]
    path, record = run_report(tmp_path, *dirs)
    assert verdicts(record, "finding1") == [findings.HELD, findings.HELD]
    assert verdicts(record, "finding2") == [findings.HELD, findings.HELD]
    assert verdicts(record, "finding3") == [findings.HELD]
    assert verdicts(record, "validation3") == [findings.HELD]
    assert verdicts(record, "validation1") == [findings.HELD, findings.HELD]  # the paper's claim; the winner's lead (activation) beyond the spread
    assert verdicts(record, "validation2") == [findings.NOT_RUN]
    # the report's own numbers are the hand-computed ones
    boolq = next(p for p in record["sections"]["finding1"]["parts"] if p["detail"].get("dataset") == "boolq" and p["detail"]["threshold"].startswith("γ"))
    counts = FALLING["boolq"]
    ms, md = sum(counts[:6]) / 6, sum(counts[6:]) / 6
    assert boolq["statistic"] == pytest.approx(math.log((ms + 1) / (md + 1)))
    v1 = record["sections"]["validation1"]["parts"][0]
    assert v1["statistic"] == pytest.approx(-1.0) and v1["detail"]["spread"] == pytest.approx(0.2)
    text = path.read_text()
    assert "## Validation 2" in text and "not run" in text


def test_profiles_built_not_to_hold_are_not_held(tmp_path):
    dirs = [
        counts_run(make(tmp_path, "counts"), RISING), failing_llmdcos(make(tmp_path, "llmdcos")),
        sts_run(make(tmp_path, "sts"), -1), compare_run(tmp_path / "compare", {"uniform": [9.0, 9.1, 8.9], "activation": [10.0, 10.1, 9.9]}),
    ]
    _, record = run_report(tmp_path, *dirs)
    assert verdicts(record, "finding1") == [findings.NOT_HELD, findings.NOT_HELD]
    assert verdicts(record, "finding2") == [findings.NOT_HELD, findings.NOT_HELD]
    assert verdicts(record, "finding3") == [findings.NOT_HELD]
    assert verdicts(record, "validation3") == [findings.NOT_HELD]
    assert verdicts(record, "validation1") == [findings.NOT_HELD, findings.HELD]  # uniform wins, beyond the spread


def test_same_seed_gives_the_same_report_statistics(tmp_path):
    dirs = [counts_run(make(tmp_path, "counts"), FALLING), holding_llmdcos(make(tmp_path, "llmdcos"))]
    first, a = run_report(tmp_path, *dirs)
    second, b = run_report(tmp_path, *dirs)
    assert first.parent.name == "version_0" and second.parent.name == "version_1"  # never overwritten
    assert a["sections"] == b["sections"]


def test_missing_runs_say_not_run_and_missing_fields_cannot_assess(tmp_path):
    path, record = run_report(tmp_path, llmdcos_run(make(tmp_path, "llmdcos"), {"a-a": noisy(FLAT, 5, 1), "a-b": noisy(DOWN, 5, 2), "b-b": noisy(FLAT, 5, 3)},
                                                    ["a", "b"], None))
    for section in ("finding1", "validation1", "validation2", "validation3", "allpairs", "zeroshot"):
        assert verdicts(record, section) in ([findings.NOT_RUN], []), section
    (f3,) = record["sections"]["finding3"]["summary"]
    assert f3["verdict"] == findings.CANNOT and "matrix_layers" in f3["reason"]
    text = path.read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert all(len(s.strip().splitlines()) > 1 for s in sections), "no empty section"
    assert "cannot assess: llmdcos.json in" in text


def test_one_seed_is_inconclusive_and_calibration_sets_are_compared(tmp_path):
    zs_mmlu = {"mmlu": {"acc": 0.45, "acc_stderr": 0.01}, "siqa": {"acc": 0.40, "acc_stderr": 0.01}}
    zs_siqa = {"mmlu": {"acc": 0.38, "acc_stderr": 0.01}, "siqa": {"acc": 0.47, "acc_stderr": 0.01}}
    mmlu = compare_run(tmp_path / "cmp_mmlu", {"uniform": [10.0], "activation": [9.0]}, "mmlu", zs_mmlu)
    siqa = compare_run(tmp_path / "cmp_siqa", {"uniform": [10.0], "activation": [9.0]}, "siqa", zs_siqa)
    _, record = run_report(tmp_path, mmlu, siqa)
    labels = [a["label"] for a in record["sections"]["validation1"]["summary"]]
    assert labels == ["inconclusive (1 seed)"] * 4  # per run: the paper's claim and the winner's lead
    assert all(p["label"] == "inconclusive (1 seed)" for p in record["sections"]["validation1"]["parts"])
    v2 = record["sections"]["validation2"]
    assert [a["verdict"] for a in v2["summary"]] == [findings.HELD, findings.HELD]  # uniform and activation, each: mmlu helps mmlu, siqa helps siqa
    diff = next(p for p in v2["parts"] if p["detail"]["task"] == "mmlu")
    assert diff["statistic"] == pytest.approx(0.07)
    assert diff["interval"][0] == pytest.approx(0.07 - findings.Z95 * math.sqrt(2) * 0.01)


def test_sts_baselines_are_shown_when_present(tmp_path):
    gold = [i / 40 for i in range(40)]
    tfidf = [g if i % 2 else 1 - g for i, g in enumerate(gold)]  # half the pairs in reverse order: a weak baseline
    run = sts_run(make(tmp_path, "sts"), +1, tfidf_spearman=float(stats.spearmanr(tfidf, gold).statistic), tfidf_p_value=1e-3, tfidf=tfidf,
                  hidden_spearman=0.2, hidden_per_layer_spearman=[0.1, 0.5, 0.3])
    path, record = run_report(tmp_path, run)
    (v3,) = record["sections"]["validation3"]["summary"]
    assert v3["detail"]["baselines"]["hidden_spearman"] == 0.2 and "tfidf" not in v3["detail"]["baselines"]  # per-pair lists stay out
    versus = v3["detail"]["versus_baselines"]["tfidf"]
    ours = json.loads((run / "sts.json").read_text())
    expected = stats.spearmanr(ours["layer_sum"], gold).statistic - stats.spearmanr(tfidf, gold).statistic
    assert versus["difference"] == pytest.approx(expected) and versus["interval"][0] > 0
    assert "hidden" not in v3["detail"]["versus_baselines"]  # no hidden_layer_sum stored: no difference claimed
    assert "0.5 (layer 1)" in path.read_text()


def test_figures_are_linked_relative_to_the_report(tmp_path):
    path, _ = run_report(tmp_path, counts_run(make(tmp_path, "counts"), FALLING), holding_llmdcos(make(tmp_path, "llmdcos")))
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text())
    assert sorted(Path(link).name for link in links) == ["counts.png", "llmdcos_box.png", "similarity_matrix.png"]
    assert all(not Path(link).is_absolute() and (path.parent / link).is_file() for link in links)


# ---------------------------------------------------------------------------------------------
# the command


def test_cli_prints_the_report_path_last(tmp_path, capsys):
    run = counts_run(make(tmp_path, "counts"), FALLING)
    cli_main(["report", str(run), "--output", str(tmp_path / "out"), "--resamples", "200"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == str(tmp_path / "out" / "version_0" / "report.md") and Path(last).is_file()


def test_a_logger_dir_stands_for_its_newest_run_with_results(tmp_path, capsys):
    older = counts_run(make(tmp_path, "counts"), RISING)
    for n in (2, 10, 11):
        (older.parent / f"version_{n}").mkdir()
    counts_run(older.parent / "version_2", RISING)
    newest = counts_run(older.parent / "version_10", FALLING)  # numerically newest: 10 > 2
    # version_11 stays empty: an interrupted run without results is passed over
    path = report_main([str(older.parent), "--output", str(tmp_path / "reports"), "--resamples", str(RESAMPLES)])
    record = json.loads((path.parent / "report.json").read_text())
    assert [run["path"] for run in record["inputs"]] == [str(newest)]
    assert f"reading its newest run, {newest.name}" in capsys.readouterr().out


@pytest.mark.parametrize("make_dir, expected", [
    (lambda p: p.mkdir() or p, "holds none of the files report reads: counts.json"),
    (lambda p: p, "does not exist"),
    (lambda p: (p / "version_0").mkdir(parents=True) or p, "holds none of the files report reads"),  # an empty version
])
def test_a_bad_run_dir_is_one_error_line_with_status_2(tmp_path, capsys, make_dir, expected):
    bad = make_dir(tmp_path / "bad")
    with pytest.raises(SystemExit) as exit_:
        cli_main(["report", str(bad), "--output", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(bad) in err[0] and expected in err[0]
    assert not (tmp_path / "out").exists()  # refused before any work


def test_bad_options_are_one_error_line(tmp_path, capsys):
    run = counts_run(make(tmp_path, "counts"), FALLING)
    for args in (["--resamples", "5"], ["--resamples", "99"], ["--seed", "x"], []):
        with pytest.raises(SystemExit) as exit_:
            cli_main(["report", *([str(run)] if args else []), *args])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
    cli_main(["report", str(run), "--resamples", "100", "--output", str(tmp_path / "out")])  # the bound itself is accepted
    assert (tmp_path / "out" / "version_0" / "report.md").is_file()


def test_corpora_vs_tasks_pools_counts_runs_and_is_not_run_without_a_corpus(tmp_path):
    tasks = counts_run(make(tmp_path, "counts"), {k: FALLING[k] for k in ("boolq", "mmlu")})
    _, record = run_report(tmp_path, tasks)
    assert verdicts(record, "finding1") == [findings.HELD, findings.NOT_RUN]
    corpora = counts_run(make(tmp_path, "counts_corpora"), {k: FALLING[k] for k in ("c4", "boolq")})  # boolq twice: kept apart, by run
    _, record = run_report(tmp_path, tasks, corpora)
    assert verdicts(record, "finding1") == [findings.HELD, findings.HELD]
    names = {p["detail"].get("dataset") for p in record["sections"]["finding1"]["parts"]}
    assert {"boolq [run 1]", "boolq [run 2]", "mmlu", "c4"} <= names


def test_validate_runs_with_zero_shot_feed_validation_2_by_protocol(tmp_path):
    for calib, accs in (("mmlu", {"mmlu": 0.50, "siqa": 0.40}), ("siqa", {"mmlu": 0.40, "siqa": 0.50})):
        run = make(tmp_path, f"prune_{calib}")
        outputs.write_json(run / "pruning.json", {"model": "fake-llama", "method": "activation", "target_sparsity": 0.5,
                                             "calibration": {"dataset": calib, "seed": 0}})
        outputs.write_json(run / "zeroshot.json", {"protocol": "paper", "tasks": list(accs), "results": {t: {"acc": a, "n": 256} for t, a in accs.items()}})
    path, record = run_report(tmp_path, tmp_path / "runs" / "prune_mmlu" / "version_0", tmp_path / "runs" / "prune_siqa" / "version_0")
    (v2,) = record["sections"]["validation2"]["summary"]
    assert v2["verdict"] == findings.HELD and "paper" in v2["claim"]
    se = math.sqrt(0.5 * 0.5 / 256) ** 2 + math.sqrt(0.4 * 0.6 / 256) ** 2
    part = record["sections"]["validation2"]["parts"][0]
    assert part["interval"][0] == pytest.approx(0.1 - findings.Z95 * math.sqrt(se))
    assert "| paper |" in path.read_text()  # the zero-shot table names the protocol


def test_allpairs_is_read_defensively_and_shown_without_a_verdict(tmp_path):
    run = make(tmp_path, "allpairs")
    outputs.write_json(run / "allpairs.json", {"model": "fake-llama", "n_pairs": 10, "llmdcos_per_layer_spearman": [0.1, 0.4, None],
                                          "tfidf_spearman": 0.3, "something_else": {"x": 1}})
    (run / "allpairs_layers.png").write_bytes(b"\x89PNG fake")
    path, record = run_report(tmp_path, run)
    assert record["sections"]["allpairs"]["summary"] == []
    text = path.read_text()
    assert "0.4 (layer 1)" in text and "tfidf_spearman | 0.3" in text and "allpairs_layers.png" in text


def test_a_broken_run_file_is_one_error_line(tmp_path, capsys):
    run = make(tmp_path, "counts")
    (run / "counts.json").write_text("[1, 2]")
    with pytest.raises(SystemExit):
        cli_main(["report", str(run), "--output", str(tmp_path / "out")])
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: ") and "counts.json: holds a JSON list, not an object; it was changed or damaged" in err


def test_a_counts_run_without_datasets_cannot_be_assessed(tmp_path):
    run = make(tmp_path, "counts")
    outputs.write_json(run / "counts.json", {"model": "fake-llama", "gamma": 2e-5, "n_layers": 12})
    path, record = run_report(tmp_path, run)
    (f1,) = record["sections"]["finding1"]["summary"]
    assert f1["verdict"] == findings.CANNOT and "lacks 'datasets'" in f1["reason"]
    assert "cannot assess" in path.read_text()


# ---------------------------------------------------------------------------------------------
# decision edges that run through lit_activation/report/ (issue 18; the pure rules are in tests/test_findings.py)


def test_report_intervals_are_scipy_s_with_the_given_seed_and_resamples(tmp_path):
    """The report passes --seed and --resamples to the bootstrap: its Finding 1 interval is scipy's, recomputed here."""
    _, record = run_report(tmp_path, counts_run(make(tmp_path, "counts"), FALLING), seed=5)
    part = next(p for p in record["sections"]["finding1"]["parts"] if p["detail"].get("dataset") == "mmlu" and p["detail"]["threshold"].startswith("γ"))
    counts = np.asarray(FALLING["mmlu"], dtype=float)
    rng = {"rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state": np.random.default_rng(5)}
    ci = stats.bootstrap((counts[:6], counts[6:]), lambda s, d: math.log((s.mean() + 1) / (d.mean() + 1)), paired=False, vectorized=False,
                         n_resamples=RESAMPLES, confidence_level=0.95, method="percentile", **rng).confidence_interval
    assert part["interval"] == pytest.approx([ci.low, ci.high], rel=1e-12)


def test_finding3_with_three_datasets_compares_each_with_its_largest_other(tmp_path):
    """Finding 3 over three datasets: a (0.50) is below a-b (0.55) though above the mean of its others (0.425): not held."""
    levels = {"a-a": 0.50, "a-b": 0.55, "a-c": 0.30, "b-b": 0.80, "b-c": 0.30, "c-c": 0.80}
    per_pair = {pair: noisy([v] * DEPTH, N_PAIRS, i, noise=0.004) for i, (pair, v) in enumerate(levels.items())}
    _, record = run_report(tmp_path, llmdcos_run(make(tmp_path, "llmdcos"), per_pair, ["a", "b", "c"], [6, 8]))
    assert verdicts(record, "finding3") == [findings.NOT_HELD]
    parts = {p["detail"]["dataset"]: p for p in record["sections"]["finding3"]["parts"]}
    assert [parts[x]["verdict"] for x in "abc"] == [findings.NOT_HELD, findings.HELD, findings.HELD]
    assert parts["a"]["detail"]["best_other"] == "b"
    deep = {pair: [sum(r[6:9]) / 3 for r in rows] for pair, rows in per_pair.items()}
    mean = {pair: sum(v) / len(v) for pair, v in deep.items()}
    assert parts["a"]["statistic"] == pytest.approx(mean["a-a"] - mean["a-b"])
    assert parts["c"]["statistic"] == pytest.approx(mean["c-c"] - max(mean["a-c"], mean["b-c"]))


def pruned_run(tmp_path: Path, calibration: str, seed: int, accs: dict[str, float]) -> Path:
    """A `validate` run: pruning.json and an lm-eval zeroshot.json with acc_stderr 0.01 per task."""
    run = make(tmp_path, f"prune_{calibration}_{seed}")
    outputs.write_json(run / "pruning.json", {"model": "fake-llama", "method": "activation", "target_sparsity": 0.5,
                                         "calibration": {"dataset": calibration, "seed": seed}})
    outputs.write_json(run / "zeroshot.json", {"protocol": "lm-evaluation-harness", "tasks": list(accs),
                                          "results": {t: {"acc": a, "acc_stderr": 0.01} for t, a in accs.items()}})
    return run


@pytest.mark.parametrize("shift, verdict", [(+0.0405, findings.HELD), (-0.0380, findings.INCONCLUSIVE), (-0.0405, findings.NOT_HELD)])
def test_validation2_two_seeds_each_decide_at_the_interval_edge(tmp_path, shift, verdict):
    """Validation 2 with 2 seeds per calibration set: mmlu calibrated on mmlu minus on siqa = shift; its interval's edge decides.

    Per side se = sqrt(0.01² + var(seeds) / 2) = sqrt(0.0002), so the half width is 1.96 · 0.02 ≈ 0.0392: ±0.0405 clears it, ±0.038 does not.
    """
    dirs = [pruned_run(tmp_path, "mmlu", s, {"mmlu": 0.40 + 0.02 * s, "siqa": 0.50 + 0.02 * s}) for s in (0, 1)]
    dirs += [pruned_run(tmp_path, "siqa", s, {"mmlu": 0.40 + 0.02 * s - shift, "siqa": 0.60 + 0.02 * s}) for s in (0, 1)]
    _, record = run_report(tmp_path, *dirs)
    v2 = record["sections"]["validation2"]
    part = next(p for p in v2["parts"] if p["detail"]["task"] == "mmlu")
    assert part["detail"]["matched_seeds"] == part["detail"]["other_seeds"] == 2
    half = 1.959963984540054 * math.sqrt(2 * (0.01**2 + np.var([0.40, 0.42], ddof=1) / 2))
    assert part["statistic"] == pytest.approx(shift) and part["interval"] == pytest.approx([shift - half, shift + half])
    assert part["verdict"] == verdict
    assert [p["verdict"] for p in v2["parts"] if p["detail"]["task"] == "siqa"] == [findings.HELD]  # +0.1
    assert [a["verdict"] for a in v2["summary"]] == [verdict]


def test_a_diverged_seed_makes_validation1_inconclusive_not_a_crash(tmp_path):
    """A NaN perplexity in results.csv (a diverged run) gives "inconclusive (non-finite perplexity)" and a report, not a traceback."""
    run = compare_run(tmp_path / "compare", {"uniform": [10.0, 10.1, 9.9], "activation": [9.0, math.nan, 8.9]})
    path, record = run_report(tmp_path, run)
    assert [a["label"] for a in record["sections"]["validation1"]["summary"]] == ["inconclusive (non-finite perplexity)"] * 2
    assert path.is_file()


def frontier_run(path: Path, points: dict[tuple[str, str], list[float]], with_metric: bool = True) -> Path:
    """A compare run with several allocations × metrics at 50 % (seeds as given)."""
    header = HEADER if with_metric else [h for h in HEADER if h != "pruning_metric"]
    rows = [["dense", "-", 0.0, 0, 8.0, "ppl/x", 0.0, "{}", 1.0]]
    for (method, metric), values in points.items():
        rows += [[method, metric, 0.5, seed, ppl, "ppl/x", 0.5, "{}", 1.0] for seed, ppl in enumerate(values)]
    if not with_metric:
        rows = [r[:1] + r[2:] for r in rows]
    outputs.write_csv(path / "results.csv", header, rows)
    outputs.write_json(path / "comparison.json", {"fixed": {"model": "fake-llama", "evaluation": "ppl/x", "calibration": {"dataset": "c4"}}})
    return path


def test_the_winning_allocation_and_metric_per_sparsity_and_its_lead_over_the_spread(tmp_path):
    """Four allocation + metric points: the winner is the lowest mean (owl + taylor), its lead over
    the runner-up (activation + wanda) is 0.5 against a spread of 0.2 (held); the paper's claim is
    decided with the paper's metric (wanda) only, against uniform + wanda."""
    points = {
        ("uniform", "wanda"): [10.0, 10.1, 9.9], ("activation", "wanda"): [9.5, 9.6, 9.4],
        ("uniform", "taylor"): [9.8, 9.9, 9.7], ("owl", "taylor"): [9.0, 9.1, 8.9],
    }
    path, record = run_report(tmp_path, frontier_run(tmp_path / "cmp", points))
    v1 = record["sections"]["validation1"]
    winner = next(p for p in v1["parts"] if "winner" in p["detail"])
    assert (winner["detail"]["winner"], winner["detail"]["runner_up"]) == ("owl + taylor", "activation + wanda")
    assert winner["statistic"] == pytest.approx(0.5) and winner["detail"]["spread"] == pytest.approx(0.2) and winner["verdict"] == findings.HELD
    paper = next(p for p in v1["parts"] if p["detail"].get("method") == "activation")
    assert paper["detail"]["metric"] == "wanda" and paper["statistic"] == pytest.approx(-0.5)  # against uniform + wanda, not + taylor
    assert "| 50% | owl + taylor | 9 ± 0.1 | activation + wanda | 0.5 | 0.2 | held |" in path.read_text()


def test_a_lead_within_the_seed_spread_is_inconclusive(tmp_path):
    points = {("uniform", "wanda"): [10.0, 10.2], ("activation", "wanda"): [9.75, 9.95]}  # lead 0.25, spread 2·0.1414 = 0.283
    _, record = run_report(tmp_path, frontier_run(tmp_path / "cmp", points))
    winner = next(p for p in record["sections"]["validation1"]["parts"] if "winner" in p["detail"])
    assert winner["detail"]["winner"] == "activation + wanda" and winner["label"] == "inconclusive (lead within the seed spread)"


def test_results_of_before_the_metric_column_read_as_wanda(tmp_path):
    points = {("uniform", "wanda"): [10.0, 10.1], ("activation", "wanda"): [9.0, 9.1]}
    _, record = run_report(tmp_path, frontier_run(tmp_path / "cmp", points, with_metric=False))
    assert verdicts(record, "validation1") == [findings.HELD, findings.HELD]


def test_the_paper_s_claim_is_decided_by_its_metric_wanda_even_when_another_metric_comes_first(tmp_path):
    """Taylor rows first, and activation + taylor losing to uniform + taylor: the summary's verdict is
    still activation + wanda against uniform + wanda (held), never the first metric's."""
    points = {
        ("uniform", "taylor"): [9.0, 9.1, 8.9], ("activation", "taylor"): [9.6, 9.7, 9.5],
        ("uniform", "wanda"): [10.0, 10.1, 9.9], ("activation", "wanda"): [9.5, 9.6, 9.4],
    }
    _, record = run_report(tmp_path, frontier_run(tmp_path / "cmp", points))
    v1 = record["sections"]["validation1"]
    claim = next(a for a in v1["summary"] if a["claim"].startswith("Validation 1"))
    assert "metric wanda" in claim["claim"] and claim["verdict"] == findings.HELD
    taylor = next(p for p in v1["parts"] if p["detail"].get("method") == "activation" and p["detail"]["metric"] == "taylor")
    assert taylor["verdict"] == findings.NOT_HELD  # a part of the table, not of the claim


def test_validation2_compares_only_runs_of_the_same_sparsity(tmp_path):
    """mmlu calibration helps mmlu at 50 % (+0.1) and hurts it at 60 % (−0.1): two claims with opposite
    verdicts; pooling the sparsities would give one inconclusive claim."""
    dirs = []
    for sparsity, shift in ((0.5, 0.1), (0.6, -0.1)):
        for calibration, mmlu in (("mmlu", 0.40 + shift), ("siqa", 0.40)):
            for seed in (0, 1):
                siqa = 0.6 if calibration == "siqa" else 0.5  # siqa's own calibration helps it at both sparsities
                run = pruned_run(tmp_path, f"{calibration}_{sparsity}", seed, {"mmlu": mmlu + 0.01 * seed, "siqa": siqa + 0.01 * seed})
                record = json.loads((run / "pruning.json").read_text())
                record.update(target_sparsity=sparsity, calibration={"dataset": calibration, "seed": seed})
                (run / "pruning.json").write_text(json.dumps(record))
                dirs.append(run)
    _, report = run_report(tmp_path, *dirs)
    claims = {a["claim"]: a["verdict"] for a in report["sections"]["validation2"]["summary"]}
    assert len(claims) == 2
    assert next(v for c, v in claims.items() if "activation 0.5" in c) == findings.HELD
    assert next(v for c, v in claims.items() if "activation 0.6" in c) == findings.NOT_HELD


def test_dataset_kinds_come_from_the_registry_and_unknown_names_are_other():
    from lit_activation.report.runs import dataset_kind

    assert [dataset_kind(n) for n in ("wiki", "c4", "boolq", "mmlu", "stsb", "my-own-set")] == ["corpus", "corpus", "task", "task", "other", "other"]


def sweep_run(path: Path, points: dict[tuple[str, str, float], list[float]]) -> Path:
    """A compare run: (allocation, metric, sparsity) -> perplexity per seed, and the dense reference."""
    rows = [["dense", "-", 0.0, 0, 8.0, "ppl/x", 0.0, "{}", 1.0]]
    for (method, metric, sparsity), values in points.items():
        rows += [[method, metric, sparsity, seed, ppl, "ppl/x", sparsity, "{}", 1.0] for seed, ppl in enumerate(values)]
    outputs.write_csv(path / "results.csv", HEADER, rows)
    outputs.write_json(path / "comparison.json", {"fixed": {"model": "fake-llama", "evaluation": "ppl/x", "calibration": {"dataset": "c4"}}})
    return path


@pytest.mark.parametrize(("sparsegpt_uniform", "verdict"), [([10.11, 10.21, 10.31], findings.HELD), ([10.09, 10.19, 10.29], findings.INCONCLUSIVE)])
def test_the_activation_allocation_gets_a_verdict_per_metric_the_paper_s_first(tmp_path, sparsegpt_uniform, verdict):
    """Wanda's claim (activation 0.5 below uniform, spread 0.2: held) comes first; SparseGPT's is its own:
    activation [9.9, 10, 10.1] against uniform 0.21 higher (held) or 0.19 higher (within the spread)."""
    points = {
        ("uniform", "wanda", 0.5): [10.0, 10.1, 9.9], ("activation", "wanda", 0.5): [9.5, 9.6, 9.4],
        ("uniform", "sparsegpt", 0.5): sparsegpt_uniform, ("activation", "sparsegpt", 0.5): [9.9, 10.0, 10.1],
    }
    _, record = run_report(tmp_path, sweep_run(tmp_path / "cmp", points))
    claims = [a for a in record["sections"]["validation1"]["summary"] if a["claim"].startswith("Validation 1")]
    assert ["metric wanda" in claims[0]["claim"], "metric sparsegpt" in claims[1]["claim"], len(claims)] == [True, True, 2]
    assert [claims[0]["verdict"], claims[1]["verdict"]] == [findings.HELD, verdict]


def test_sparsegpt_or_wanda_per_allocation_and_sparsity(tmp_path):
    """Uniform at 50 %: SparseGPT 1.0 lower (held); activation at 50 %: 0.05 apart, spread 0.2 (inconclusive);
    uniform at 60 %: Wanda 1.0 lower (not held). The claim for every allocation and sparsity is then not held."""
    points = {
        ("uniform", "wanda", 0.5): [10.0, 10.1, 9.9], ("uniform", "sparsegpt", 0.5): [9.0, 9.1, 8.9],
        ("activation", "wanda", 0.5): [9.45, 9.55, 9.35], ("activation", "sparsegpt", 0.5): [9.5, 9.6, 9.4],
        ("uniform", "wanda", 0.6): [11.0, 11.1, 10.9], ("uniform", "sparsegpt", 0.6): [12.0, 12.1, 11.9],
        ("owl", "wanda", 0.6): [11.0, 11.1, 10.9],  # no SparseGPT run with OWL: not compared
    }
    path, record = run_report(tmp_path, sweep_run(tmp_path / "cmp", points))
    v1 = record["sections"]["validation1"]
    pair = [p for p in v1["parts"] if p["detail"].get("baseline_metric") == "wanda"]
    assert [(p["detail"]["method"], p["detail"]["sparsity"], p["verdict"]) for p in pair] == [
        ("uniform", 0.5, findings.HELD), ("activation", 0.5, findings.INCONCLUSIVE), ("uniform", 0.6, findings.NOT_HELD)]
    assert [p["statistic"] for p in pair] == pytest.approx([-1.0, 0.05, 1.0])
    claim = next(a for a in v1["summary"] if "sparsegpt gives a lower perplexity than wanda" in a["claim"])
    assert claim["verdict"] == findings.NOT_HELD and claim["detail"]["parts"] == 3
    text = path.read_text()
    assert "| 50% | uniform | 9 ± 0.1 | 10 ± 0.1 | -1 | 0.2 | sparsegpt | held |" in text
    assert "| 60% | uniform | 12 ± 0.1 | 11 ± 0.1 | 1 | 0.2 | wanda | not held |" in text
    assert "| 50% | activation | 9.5 ± 0.1 | 9.45 ± 0.1 | 0.05 | 0.2 | – | inconclusive (difference within the seed spread) |" in text


def test_without_both_sparsegpt_and_wanda_there_is_no_head_to_head(tmp_path):
    points = {("uniform", "wanda", 0.5): [10.0, 10.1], ("activation", "taylor", 0.5): [9.0, 9.1]}
    path, record = run_report(tmp_path, sweep_run(tmp_path / "cmp", points))
    assert not any("sparsegpt" in a["claim"] for a in record["sections"]["validation1"]["summary"])
    assert "sparsegpt or wanda" not in path.read_text()
