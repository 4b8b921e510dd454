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


PAGE_TEXT, README_TEXT = "<!-- sweep -->\nold\n<!-- /sweep -->\n", "<!-- sweep50 -->\nold\n<!-- /sweep50 -->\n"


@pytest.fixture
def inputs(tmp_path, monkeypatch) -> dict[str, Path]:
    """Stand-ins for docs/results.md and the README (each with its markers), a sweep dir holding a
    results.csv and no summary.md yet, and an empty report.md."""
    paths = {"page": tmp_path / "results.md", "readme": tmp_path / "README.md", "sweep": tmp_path / "sweep", "report": tmp_path / "report.md"}
    paths["page"].write_text(PAGE_TEXT)
    paths["readme"].write_text(README_TEXT)
    monkeypatch.setattr(results_tables, "PAGE", paths["page"])
    monkeypatch.setattr(results_tables, "README", paths["readme"])
    paths["sweep"].mkdir()
    (paths["sweep"] / "results.csv").write_text(HEADER + "dense,-,0.0,0,20.0\n")
    paths["report"].write_text("")
    return paths


def run(monkeypatch, paths: dict[str, Path], *extra: str) -> None:
    """The script as its command line runs it, on these inputs."""
    monkeypatch.setattr(sys, "argv", ["results_tables.py", str(paths["sweep"]), str(paths["report"]), *extra])
    results_tables.main()


def test_bad_inputs_are_named_before_any_page_is_written(inputs, monkeypatch, tmp_path):
    """A missing input, or a report without the sections the tables come from: one line, and the
    pages are left as they were."""
    inputs["report"].write_text("# Report\n## Summary\n| claim | verdict |\n|---|---|\n")
    with pytest.raises(SystemExit, match="summary.md not found"):
        run(monkeypatch, inputs)
    (inputs["sweep"] / "summary.md").write_text("| method | 50% |\n")
    with pytest.raises(SystemExit, match="nowhere.md not found"):
        run(monkeypatch, inputs, "--findings", str(tmp_path / "nowhere.md"))
    with pytest.raises(SystemExit, match="the report has no '## Validation 1' section"):
        run(monkeypatch, inputs)
    assert inputs["page"].read_text() == PAGE_TEXT and inputs["readme"].read_text() == README_TEXT


def test_a_page_without_its_markers_leaves_every_page_as_it_was(inputs, monkeypatch):
    inputs["readme"].write_text("no markers\n")
    (inputs["sweep"] / "summary.md").write_text("| method | 50% |\n")
    inputs["report"].write_text("## Summary\n| claim | verdict |\n|---|---|\n## Validation 1\n| table |\n")
    with pytest.raises(SystemExit, match="README.md has no <!-- sweep50 -->"):
        run(monkeypatch, inputs)
    assert inputs["page"].read_text() == PAGE_TEXT and inputs["readme"].read_text() == "no markers\n"
    inputs["readme"].write_text(README_TEXT)
    run(monkeypatch, inputs)  # the same inputs with the markers in place: both pages written
    assert "| table |" in inputs["page"].read_text() and "| dense | 20.00 | 20.00 | 5.12 |" in inputs["readme"].read_text()


def test_the_report_s_summary_keeps_the_header_and_the_claims_asked_for():
    report = "\n".join([
        "# Report", "## Summary", "![plot](a.png)",
        "| claim | verdict |", "|---|---|", "| Finding 1: counts fall | held |", "| Validation 1 (m): beats uniform | not held |",
        "## Validation 1", "| other | table |",
    ])
    assert results_tables.section(report, "Summary")[0] == "| claim | verdict |"  # the image line is dropped
    assert results_tables.summary_rows(report, "Finding") == ["| claim | verdict |", "|---|---|", "| Finding 1: counts fall | held |"]
    assert results_tables.section(report, "Validation 1") == ["| other | table |"]  # stops at no later heading: the end
