"""benchmarks/gpu_targets.py tells a GPU run whether the engine's checks are met and whether a
Triton kernel earned a default: every rule is held just inside and just outside its bound, on
hand-written reports in the layout benchmarks/gpu.py, finish.py and overhead.py write."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_targets as targets  # noqa: E402

PAPER, SPLIT = "paper's way, bf16 weights and grads", targets.SPLIT_ROW
FUSED, LINEARS = "engine, exact fp32, split + fused kernel", "engine, exact fp32, split + fused linears"
NEAR = 1 + 1e-9  # just outside a bound (inside: the bound itself, which every rule admits)


def rows(**seconds: float) -> list[dict]:
    names = {"paper": PAPER, "split": SPLIT, "fused": FUSED, "linears": LINEARS}
    return [{"what": names[k], "seconds_per_sample": v, "vs_paper_bf16": 0.0} for k, v in seconds.items()]


def report(**accuracy: float) -> dict:
    """A report meeting every target, with `accuracy` entries replaced."""
    figures = {
        "max_normalised_error_ieee": 4e-6, "max_normalised_error_split": 6e-6, "max_normalised_error_split_over_ieee": 1.5,
        "counts_max_rel_diff_q0.5": 0.0, "counts_max_rel_diff_q0.9": 5e-5,
        "fused_sums_max_normalised_error_split": 5e-6, "max_normalised_error_split_fused_linear": 7e-6,
    }
    return {
        "setup": dict(targets.REFERENCE_SETUP),
        "rows": rows(paper=0.1, split=0.03, fused=0.02, linears=0.025),
        "accuracy_4_layers": {**figures, **accuracy},
        "cli_counts": {"wall_s": 50.0, "predict_loop_over_engine": 1.1},
    }


def verdict(found: list, target: str):  # noqa: ANN201 - a Verdict
    return next(v for v in found if v.target.startswith(target))


def test_a_report_that_meets_everything_says_so():
    found = targets.verdicts(report(), {"finish_s_edge_table": 0.4, "shape": "llama-2-7b"}, None)
    assert [v.met for v in found] == [True] * len(found)
    assert len(found) == 10  # accuracy, ratio, 2 counts, speed, loop, wall, finish, two kernel defaults


@pytest.mark.parametrize(
    ("target", "key", "bound"),
    [
        ("4-layer error", "max_normalised_error_split", targets.MAX_ERROR),
        ("split error over IEEE", "max_normalised_error_split_over_ieee", targets.MAX_ERROR_OVER_IEEE),
        ("layer counts, split vs IEEE (q0.9)", "counts_max_rel_diff_q0.9", targets.MAX_COUNTS_DIFFERENCE),
    ],
)
def test_accuracy_bounds_admit_their_edge_and_nothing_beyond(target, key, bound):
    assert verdict(targets.verdicts(report(**{key: bound})), target).met is True
    assert verdict(targets.verdicts(report(**{key: bound * NEAR})), target).met is False
    assert targets.MAX_ERROR == 1e-5 and targets.MAX_ERROR_OVER_IEEE == 2 and targets.MAX_COUNTS_DIFFERENCE == 1e-4  # the bounds docs/performance.md gives


def test_the_speed_target_is_two_and_a_half_times_the_paper_loop():
    at_edge = {**report(), "rows": rows(paper=2.5, split=1.0)}
    below = {**report(), "rows": rows(paper=2.5 / NEAR, split=1.0)}
    assert verdict(targets.verdicts(at_edge), "exact engine").measured == 2.5
    assert verdict(targets.verdicts(at_edge), "exact engine").met is True
    assert verdict(targets.verdicts(below), "exact engine").met is False


@pytest.mark.parametrize(("key", "target", "bound"), [("predict_loop_over_engine", "predict loop", 1.15), ("wall_s", "counts CLI wall", 60.0)])
def test_the_run_targets_prefer_overhead_py_to_gpu_py_and_hold_their_edges(key, target, bound):
    worse = {**report(), "cli_counts": {key: bound * 2}}  # gpu.py's own CLI run misses it ...
    assert verdict(targets.verdicts(worse), target).met is False
    assert verdict(targets.verdicts(worse, None, {key: bound}), target).met is True  # ... overhead.py's same-batch pairs decide
    assert verdict(targets.verdicts(worse, None, {key: bound * NEAR}), target).met is False
    assert verdict(targets.verdicts({**report(), "cli_counts": {key: bound}}), target).met is True


def test_the_finish_target_is_one_second():
    assert verdict(targets.verdicts(report(), {"finish_s_edge_table": 1.0}), "one dataset's finish").met is True
    assert verdict(targets.verdicts(report(), {"finish_s_edge_table": NEAR}), "one dataset's finish").met is False


def test_a_kernel_earns_its_default_only_if_five_percent_faster_and_accurate():
    speed = 1.05  # five per cent, written out: the rule must keep to it
    edge = {**report(), "rows": rows(paper=1.0, split=0.5 * speed, fused=0.5, linears=0.5)}  # halving is exact: speed-up == speed
    short = {**report(), "rows": rows(paper=1.0, split=0.5 * speed / NEAR, fused=0.5, linears=0.5)}
    for target in ("default fused:", "default fused_linear:"):
        assert verdict(targets.verdicts(edge), target).met is True
        assert verdict(targets.verdicts(short), target).met is False
    assert verdict(targets.verdicts(report(fused_sums_max_normalised_error_split=1e-5 * NEAR)), "default fused:").met is False
    # the fused linears' error: within 1e-5 and within twice IEEE's, whichever is tighter
    assert verdict(targets.verdicts(report(max_normalised_error_split_fused_linear=8e-6)), "default fused_linear:").met is True
    assert verdict(targets.verdicts(report(max_normalised_error_split_fused_linear=8e-6 * NEAR)), "default fused_linear:").met is False
    loose_ieee = report(max_normalised_error_ieee=9e-6, max_normalised_error_split_fused_linear=1e-5 * NEAR)
    assert verdict(targets.verdicts(loose_ieee), "default fused_linear:").met is False


@pytest.mark.parametrize("missing", [None, math.nan, math.inf, "0.1", True])
def test_a_missing_or_failed_figure_is_not_measured_never_met(missing):
    broken = report(max_normalised_error_split=missing)
    assert verdict(targets.verdicts(broken), "4-layer error").met is None
    assert verdict(targets.verdicts(broken), "4-layer error").line().endswith("| not measured | ≤ 1e-05 | not measured |")
    assert verdict(targets.verdicts(report(max_normalised_error_split=1.00001e-5)), "4-layer error").line().startswith(
        "| 4-layer error, split products (fp64 loop) | 1.00001e-05 | ≤ 1e-05 | NOT met"
    )  # a miss is never shown as the bound itself
    failed = {**report(), "rows": rows(paper=0.1, fused=0.02)}  # the split row failed (its name carries the error): no speed-ups
    assert verdict(targets.verdicts(failed), "exact engine").met is None
    assert verdict(targets.verdicts(failed), "default fused:").met is None
    assert verdict(targets.verdicts(report()), "one dataset's finish").met is None  # no finish report given


def test_the_fused_linears_error_is_not_measured_without_ieee_s_and_a_zero_time_is_no_speed_up():
    assert verdict(targets.verdicts(report(max_normalised_error_ieee=None)), "default fused_linear:").met is None
    missed = report(max_normalised_error_ieee=None, max_normalised_error_split_fused_linear=1e-5 * NEAR)  # over 1e-5 whatever IEEE's is
    assert verdict(targets.verdicts(missed), "default fused_linear:").met is False
    zero = {**report(), "rows": rows(paper=0.1, split=0.0, fused=0.02, linears=0.025)}  # a broken timing, not an infinitely fast engine
    assert verdict(targets.verdicts(zero), "exact engine").met is None and verdict(targets.verdicts(zero), "default fused:").met is not True


def test_one_failed_half_of_a_default_decides_even_if_the_other_is_unmeasured():
    no_speed = {**report(fused_sums_max_normalised_error_split=1.0), "rows": rows(paper=0.1)}
    assert verdict(targets.verdicts(no_speed), "default fused:").met is False


def test_split_figures_are_not_measured_where_the_device_ran_plain_products_instead():
    """gpu.py's split rows run plain fp32 products where the device's split check failed: nothing
    about split products may then read as met, and the note says why."""
    plain = {**report(), "split_products_run": False}
    found = {v.target: v.met for v in targets.verdicts(plain)}
    split_rules = [t for t in found if t.startswith(("4-layer", "split error", "layer counts", "exact engine", "default"))]
    assert len(split_rules) == 7 and all(found[t] is None for t in split_rules)
    assert found["predict loop over its engine, same batches"] is True  # the CLI run's figures still count
    assert any("split check failed" in n for n in targets.setup_notes(plain, None, None))
    assert all(v.met for v in targets.verdicts({**report(), "split_products_run": True}, {"finish_s_edge_table": 0.4}))


def test_another_setup_is_noted():
    toy = {**report(), "setup": {**targets.REFERENCE_SETUP, "shape": "toy", "cli_samples": 2}}
    notes = targets.setup_notes(toy, {"shape": "smollm2-135m"}, {"samples": 8, "batch": 2})
    assert len(notes) == 3 and "'shape': 'toy'" in notes[0] and "'cli_samples': 2" in notes[0]
    assert targets.setup_notes(report(), {"shape": "llama-2-7b"}, {"samples": 320, "batch": 8}) == []


def test_the_command_reads_the_session_reports(tmp_path):
    (tmp_path / "gpu.json").write_text(json.dumps(report(max_normalised_error_split=2e-5)))
    (tmp_path / "finish.json").write_text(json.dumps({"shape": "llama-2-7b", "finish_s_edge_table": 0.5}))
    done = subprocess.run([sys.executable, "benchmarks/gpu_targets.py", str(tmp_path / "gpu.json"), "--finish", str(tmp_path / "finish.json")],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "| check | measured | bound | verdict |"
    assert "| 4-layer error, split products (fp64 loop) | 2e-05 | ≤ 1e-05 | NOT met |" in lines
    assert "| one dataset's finish at 7B, s | 0.5 | ≤ 1 | met |" in lines
    written = subprocess.run([sys.executable, "benchmarks/gpu_targets.py", str(tmp_path / "gpu.json"), "--output", str(tmp_path / "gpu_report.md")],
                             capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert written.returncode == 0 and (tmp_path / "gpu_report.md").read_text() == written.stdout  # the file holds what it printed
    missing = subprocess.run([sys.executable, "benchmarks/gpu_targets.py", str(tmp_path / "none.json")], capture_output=True, text=True, cwd=ROOT)
    expected = f"error: {tmp_path / 'none.json'}: no such report (give the JSON that benchmarks/gpu.py, finish.py or overhead.py wrote)"
    assert missing.returncode == 1 and missing.stderr.strip() == expected


def test_the_gpu_script_writes_the_report_under_the_name_the_docs_give():
    script = (ROOT / "benchmarks" / "gpu_session.sh").read_text()
    assert '--output "$out/gpu_report.md"' in script and "targets.md" not in script
    assert "gpu_report.md" in (ROOT / "docs" / "performance.md").read_text()
