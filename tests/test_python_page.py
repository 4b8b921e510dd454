"""docs/python.md runs as it is written: its Python blocks, in order, in one namespace, in a fresh directory.

One substitution, and only it: the embedded model's name becomes `tiny-llama`, a random model of the same
family built in milliseconds, so that the page's whole session (two predict runs, pruning, perplexity,
the report) takes seconds here; on the embedded model each line runs as shown, only slower.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

PAGE = ROOT / "docs" / "python.md"
EMBEDDED, STAND_IN = '"smollm2-135m"', '"tiny-llama"'


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", PAGE.read_text(), flags=re.S | re.M)


@pytest.mark.slow
def test_the_python_page_runs_as_written(tmp_path, monkeypatch, capsys):
    code = blocks()
    assert len(code) == 4 and all(EMBEDDED in block for block in code[:3])  # the page shows the embedded model
    monkeypatch.chdir(tmp_path)
    page: dict = {}
    for i, block in enumerate(code):
        exec(compile(block.replace(EMBEDDED, STAND_IN), f"{PAGE.name}, block {i + 1}", "exec"), page)  # noqa: S102 - the page is the test

    # Finding 1: the results read in the script are the run's files
    run = tmp_path / "runs" / "counts_script" / "version_0"
    assert page["counts"].results == json.loads((run / "counts.json").read_text())
    assert (tmp_path / "runs" / "counts_script_csv" / "version_0" / "metrics.csv").is_file()
    # LLMDcos of the texts in memory: every pair of sets, each text sampled from its own set
    results = page["similarity"].results
    assert results["datasets"] == ["questions", "code"] and set(results["llmdcos"]) == {"questions-questions", "questions-code", "code-code"}
    assert len(results["llmdcos"]["questions-code"]) == 3  # num_samples pairs
    # pruning: the allocation from those counts, and the model held by the script is the one pruned
    zeros = sum(int((p == 0).sum()) for n, p in page["model"].named_parameters() if n.endswith("proj.weight"))
    total = sum(p.numel() for n, p in page["model"].named_parameters() if n.endswith("proj.weight"))
    assert zeros / total == pytest.approx(page["record"]["achieved_sparsity"], abs=1e-6) and 0.45 < zeros / total < 0.55
    assert page["pruned"] > page["dense"] > 1
    # the report of both runs
    assert page["report"].markdown == Path("runs/report/version_0/report.md") and page["report"].markdown.is_file()
    assert str(page["report"].markdown) == capsys.readouterr().out.strip().splitlines()[-1]


def test_the_page_shows_only_what_its_test_runs():
    text = PAGE.read_text()
    fences = re.findall(r"^```(\w*)$", text, flags=re.M)
    assert set(fences[::2]) == {"python"}, "every example block of the page is Python, which the test runs"
    assert text.count(EMBEDDED) == sum(block.count(EMBEDDED) for block in blocks())  # the substitution touches only code
