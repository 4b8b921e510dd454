"""The report's mixture-of-experts finding: its statistic by hand, its rule at its edges, its section from a run."""

from __future__ import annotations

import pytest

from lit_activation import outputs
from lit_activation.report import findings
from lit_activation.report.experts import layer_separations
from tests.report.test_report import RESAMPLES, SEED, make, run_report, verdicts

CLAIM = "Experts (fake-moe): activated parameters separate the datasets more than routing"


def assess(activated, routing):
    return findings.experts_separation(CLAIM, activated, routing, seed=SEED, resamples=RESAMPLES)


def test_statistic_is_the_mean_layer_difference():
    a = assess([0.5, 0.4, 0.3], [0.1, 0.1, 0.0])
    assert a.statistic == pytest.approx((0.4 + 0.3 + 0.3) / 3)
    assert a.detail["activated_separation"] == pytest.approx(0.4) and a.detail["routing_separation"] == pytest.approx(1 / 15)


@pytest.mark.parametrize(("difference", "verdict"), [(1e-6, findings.HELD), (0.0, findings.INCONCLUSIVE), (-1e-6, findings.NOT_HELD)])
def test_the_rule_turns_at_zero(difference, verdict):
    """Every layer's difference just above, at and just below 0: the interval (of constant values)
    lies above, on or below 0."""
    assert assess([0.3 + difference] * 4, [0.3] * 4).verdict == verdict


def test_mixed_layers_are_inconclusive():
    assert assess([0.5, 0.1, 0.5, 0.1], [0.3] * 4).verdict == findings.INCONCLUSIVE


@pytest.mark.parametrize(("layers", "assessed"), [(2, False), (3, True)])
def test_fewer_than_three_moe_layers_cannot_be_assessed(layers, assessed):
    a = assess([0.5] * layers, [0.1] * layers)
    assert (a.verdict == findings.HELD) is assessed
    if not assessed:
        assert a.verdict == findings.CANNOT and "needs at least 3" in a.reason


def table(token_share, activated_share):
    return {"token_share": token_share, "activated_share": activated_share}


def test_layer_separations_by_hand():
    """Two layers of two experts, three datasets; in layer 1 dataset c activates no expert parameter and
    is left out there."""
    datasets = {
        "a": {"experts": {"per_layer": {"0": table([1.0, 0.0], [1.0, 0.0]), "1": table([0.5, 0.5], [0.5, 0.5])}}},
        "b": {"experts": {"per_layer": {"0": table([0.0, 1.0], [0.0, 1.0]), "1": table([0.5, 0.5], [1.0, 0.0])}}},
        "c": {"experts": {"per_layer": {"0": table([0.5, 0.5], [0.5, 0.5]), "1": table([0.5, 0.5], [None, None])}}},
    }
    got = layer_separations(datasets)
    assert [(layer, names) for layer, _, _, names in got] == [(0, ["a", "b", "c"]), (1, ["a", "b"])]
    assert got[0][1] == pytest.approx(2 / 3) and got[0][2] == pytest.approx(2 / 3)
    assert got[1][1] == pytest.approx(0.5) and got[1][2] == pytest.approx(0.0)


def moe_counts_run(path, layers: int, activated_apart: bool):
    """A counts run of a 4-expert model over two datasets that route alike; their activated parameters
    sit in different experts (`activated_apart`) or alike."""
    datasets = {}
    for d, name in enumerate(("wiki", "code")):
        share = [1.0, 0.0, 0.0, 0.0] if not activated_apart or d == 0 else [0.0, 0.0, 0.0, 1.0]
        per_layer = {str(i): table([0.25] * 4, share) for i in range(layers)}
        datasets[name] = {"n_samples": 4, "layer_counts": [1] * layers, "module_counts": {}, "experts": {"per_layer": per_layer}}
    outputs.write_json(path / "counts.json", {"model": "fake-moe", "gamma": 2e-5, "n_layers": layers, "datasets": datasets})
    return path


def test_a_moe_counts_run_gets_the_section_and_a_dense_one_does_not(tmp_path):
    _, record = run_report(tmp_path, moe_counts_run(make(tmp_path, "apart"), 4, True))
    assert verdicts(record, "experts") == [findings.HELD]
    _, record = run_report(tmp_path, moe_counts_run(make(tmp_path, "alike"), 4, False))
    assert verdicts(record, "experts") == [findings.INCONCLUSIVE]  # both separations 0
    from tests.report.test_report import counts_run

    _, record = run_report(tmp_path, counts_run(make(tmp_path, "dense"), {"wiki": [5, 4, 3, 2, 1, 1], "code": [6, 5, 4, 3, 2, 1]}))
    assert "experts" not in record["sections"]


def compare_dir(path, rows: list[tuple[str, str, float, int, float]]):
    """A compare output directory of a mixture of experts with the given (method, metric, sparsity, seed, perplexity) rows."""
    from lit_activation.pruning.comparison import HEADER

    lines = [",".join(HEADER)] + [f"{m},{k},{s},{seed},{p},ppl/wiki,{s},{{}},1.0" for m, k, s, seed, p in rows]
    (path / "results.csv").write_text("\n".join(lines) + "\n")
    outputs.write_json(path / "comparison.json", {"fixed": {"model": "fake-moe", "calibration": {"dataset": "c4"}}, "allocations": {}})
    return path


@pytest.mark.parametrize(("mass", "verdict"), [
    ([10.71, 10.91], findings.HELD),  # mean 0.29 below REAP's: beyond the two spreads, 0.141 + 0.141 = 0.283
    ([10.73, 10.93], findings.INCONCLUSIVE),  # 0.27 below: within them
    ([11.39, 11.59], findings.NOT_HELD),  # 0.39 above: beyond them the other way
])
def test_the_taylor_mass_against_a_routing_score_by_the_validation_1_rule(tmp_path, mass, verdict):
    """Experts removed at 25 %: REAP's perplexities 11.0 and 11.2 (std 0.141), the Taylor mass's two seeds
    just beyond, just within and beyond the other way of the two seed spreads. The dense sweep's rows keep
    their own section."""
    rows = [("dense", "-", 0.0, 0, 9.0), ("experts", "reap", 0.25, 0, 11.0), ("experts", "reap", 0.25, 1, 11.2),
            ("experts", "taylormass", 0.25, 0, mass[0]), ("experts", "taylormass", 0.25, 1, mass[1]),
            ("uniform", "wanda", 0.5, 0, 20.0), ("uniform", "wanda", 0.5, 1, 21.0)]
    _, record = run_report(tmp_path, compare_dir(make(tmp_path, "cmp"), rows))
    (claim,) = record["sections"]["expert_removal"]["summary"]
    assert "the Taylor mass keeps a lower perplexity than reap" in claim["claim"] and claim["verdict"] == verdict
    assert all("experts" not in str(p["detail"].get("method", "")) for p in record["sections"]["validation1"]["parts"])
