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


def test_a_page_s_region_between_its_markers_is_replaced_and_nothing_else():
    page = "intro\n<!-- x -->\nold\ntable\n<!-- /x -->\nafter\n"
    assert results_tables.filled(Path("page.md"), page, "<!-- x -->", "<!-- /x -->", "new\n") == "intro\n<!-- x -->\nnew\n<!-- /x -->\nafter\n"
    with pytest.raises(SystemExit, match=r"page\.md has no <!-- x --> \.\.\. <!-- /x --> region"):
        results_tables.filled(Path("page.md"), "intro\n<!-- x -->\nno end marker\n", "<!-- x -->", "<!-- /x -->", "new\n")


def test_bad_inputs_are_named_before_any_page_is_written(tmp_path, monkeypatch):
    """A missing input, or a report without the sections the tables come from: one line, and the
    pages (here stand-ins for docs/results.md and the README) are left as they were."""
    page, readme = tmp_path / "results.md", tmp_path / "README.md"
    page.write_text("<!-- sweep -->\nold\n<!-- /sweep -->\n")
    readme.write_text("<!-- sweep50 -->\nold\n<!-- /sweep50 -->\n")
    monkeypatch.setattr(results_tables, "PAGE", page)
    monkeypatch.setattr(results_tables, "README", readme)
    sweep, report = tmp_path / "sweep", tmp_path / "report.md"
    sweep.mkdir()
    (sweep / "results.csv").write_text(HEADER + "dense,-,0.0,0,20.0\n")
    report.write_text("# Report\n## Summary\n| claim | verdict |\n|---|---|\n")
    monkeypatch.setattr(sys, "argv", ["results_tables.py", str(sweep), str(report)])
    with pytest.raises(SystemExit, match="summary.md not found"):
        results_tables.main()
    (sweep / "summary.md").write_text("| method | 50% |\n")
    monkeypatch.setattr(sys, "argv", ["results_tables.py", str(sweep), str(report), "--findings", str(tmp_path / "nowhere.md")])
    with pytest.raises(SystemExit, match="nowhere.md not found"):
        results_tables.main()
    monkeypatch.setattr(sys, "argv", ["results_tables.py", str(sweep), str(report)])
    with pytest.raises(SystemExit, match="the report has no '## Validation 1' section"):
        results_tables.main()
    assert page.read_text() == "<!-- sweep -->\nold\n<!-- /sweep -->\n" and readme.read_text() == "<!-- sweep50 -->\nold\n<!-- /sweep50 -->\n"


def test_a_page_without_its_markers_leaves_every_page_as_it_was(tmp_path, monkeypatch):
    page, readme = tmp_path / "results.md", tmp_path / "README.md"
    page.write_text("<!-- sweep -->\nold\n<!-- /sweep -->\n")
    readme.write_text("no markers\n")
    monkeypatch.setattr(results_tables, "PAGE", page)
    monkeypatch.setattr(results_tables, "README", readme)
    sweep, report = tmp_path / "sweep", tmp_path / "report.md"
    sweep.mkdir()
    (sweep / "results.csv").write_text(HEADER + "dense,-,0.0,0,20.0\n")
    (sweep / "summary.md").write_text("| method | 50% |\n")
    report.write_text("## Summary\n| claim | verdict |\n|---|---|\n## Validation 1\n| table |\n")
    monkeypatch.setattr(sys, "argv", ["results_tables.py", str(sweep), str(report)])
    with pytest.raises(SystemExit, match="README.md has no <!-- sweep50 -->"):
        results_tables.main()
    assert page.read_text() == "<!-- sweep -->\nold\n<!-- /sweep -->\n" and readme.read_text() == "no markers\n"
    readme.write_text("<!-- sweep50 -->\n<!-- /sweep50 -->\n")
    results_tables.main()  # the same inputs with the markers in place: both pages written
    assert "| table |" in page.read_text() and "| dense | 20.00 | 20.00 | 5.12 |" in readme.read_text()


def test_the_report_s_summary_keeps_the_header_and_the_claims_asked_for():
    report = "\n".join([
        "# Report", "## Summary", "![plot](a.png)",
        "| claim | verdict |", "|---|---|", "| Finding 1: counts fall | held |", "| Validation 1 (m): beats uniform | not held |",
        "## Validation 1", "| other | table |",
    ])
    assert results_tables.section(report, "Summary")[0] == "| claim | verdict |"  # the image line is dropped
    assert results_tables.summary_rows(report, "Finding") == ["| claim | verdict |", "|---|---|", "| Finding 1: counts fall | held |"]
    assert results_tables.section(report, "Validation 1") == ["| other | table |"]  # stops at no later heading: the end
