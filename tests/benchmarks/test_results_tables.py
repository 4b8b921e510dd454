"""benchmarks/results_tables.py writes the docs' result tables from a sweep's and a report's files:
checked on hand-written files, with the means and spreads worked out by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import results_tables  # noqa: E402

HEADER = "method,pruning_metric,sparsity,seed,perplexity\n"


def test_the_readme_table_is_each_allocation_s_mean_and_spread_at_half_sparsity(tmp_path):
    rows = [
        "dense,-,0.0,0,20.0",
        "uniform,wanda,0.5,0,30.0", "uniform,wanda,0.5,1,32.0",  # mean 31, sample std √2
        "uniform,wanda,0.6,0,99.0",  # another sparsity: not in the 50 % table
        "uniform,sparsegpt,0.5,0,28.5",  # one seed: std 0
        "activation,wanda,0.5,0,40.0", "activation,wanda,0.5,1,41.0", "activation,wanda,0.5,2,45.0",  # mean 42, std √7
    ]
    (tmp_path / "results.csv").write_text(HEADER + "\n".join(rows) + "\n")
    lines = results_tables.at_half(tmp_path).splitlines()
    assert lines[2] == "| dense | 20.00 | 20.00 | 5.12 |"
    assert lines[3] == "| uniform | 31.00 ± 1.41 (2) | 28.50 ± 0.00 (1) | 6.46 |"
    assert lines[4] == "| activation | 42.00 ± 2.65 (3) | – | 6.39 |"
    assert lines[5] == "| owl | – | – | – |" and lines[6] == "| alphapruning | – | – | – |"  # no runs: no figure


def test_a_page_s_region_between_its_markers_is_replaced_and_nothing_else(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- x -->\nold\ntable\n<!-- /x -->\nafter\n")
    results_tables.fill(page, "<!-- x -->", "<!-- /x -->", "new\n")
    assert page.read_text() == "intro\n<!-- x -->\nnew\n<!-- /x -->\nafter\n"


def test_a_page_without_the_markers_is_refused_and_left_as_it_was(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- x -->\nno end marker\n")
    with pytest.raises(SystemExit, match=r"page\.md has no <!-- x --> \.\.\. <!-- /x --> region"):
        results_tables.fill(page, "<!-- x -->", "<!-- /x -->", "new\n")
    assert page.read_text() == "intro\n<!-- x -->\nno end marker\n"


def test_the_report_s_summary_keeps_the_header_and_the_claims_asked_for():
    report = "\n".join([
        "# Report", "## Summary", "![plot](a.png)",
        "| claim | verdict |", "|---|---|", "| Finding 1: counts fall | held |", "| Validation 1 (m): beats uniform | not held |",
        "## Validation 1", "| other | table |",
    ])
    assert results_tables.section(report, "Summary")[0] == "| claim | verdict |"  # the image line is dropped
    assert results_tables.summary_rows(report, "Finding") == ["| claim | verdict |", "|---|---|", "| Finding 1: counts fall | held |"]
    assert results_tables.section(report, "Validation 1") == ["| other | table |"]  # stops at no later heading: the end
