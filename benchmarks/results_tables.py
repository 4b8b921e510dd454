"""The tables of docs/results.md, from a sweep's summary and the findings report on it.

    lit-activation compare --config configs/compare_embedded.yaml
    lit-activation report runs/compare_embedded            # prints the report's path
    python benchmarks/results_tables.py runs/compare_embedded runs/report/version_N/report.md \
        --findings runs/report/version_M/report.md     # the report on make demo's counts and similarity runs

Rewrites what lies between the `<!-- sweep -->` and `<!-- /sweep -->` markers of docs/results.md
(the sweep's perplexity table, and the report's summary rows and Validation 1 section), and between
`<!-- sweep50 -->` and `<!-- /sweep50 -->` in the README (50 % beside the paper's figures), so that
the pages show the files' own figures, never a copy typed by hand. With --findings, also what lies
between `<!-- findings -->` and `<!-- /findings -->`: that report's verdicts on Findings 1–3.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from pathlib import Path

from lit_activation.report.findings import mean_std

ROOT = Path(__file__).parents[1]
PAGE, README = ROOT / "docs" / "results.md", ROOT / "README.md"
PAPER = {"dense": "5.12", "uniform": "6.46", "activation": "6.39"}  # the paper's Llama-2-7B at 50 % with Wanda, WikiText-2
ALLOCATIONS = ("uniform", "activation", "owl", "alphapruning")


def section(report: str, title: str) -> list[str]:
    """The lines of one `## title` section of a report, without its heading and images."""
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("## ") and title in line), None)
    if start is None:
        raise SystemExit(f"the report has no '## {title}' section: is it the report of the right runs?")
    start += 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return [line for line in lines[start:end] if not line.startswith("![")]


def summary_rows(report: str, keep: str) -> list[str]:
    """The report's summary table, only the rows whose claim contains `keep`."""
    table = section(report, "Summary")
    head = [line for line in table if line.startswith("|")][:2]
    return head + [line for line in table[2:] if line.startswith("|") and keep in line.split("|")[1]]


def tables(compare_dir: Path, report_path: Path) -> str:
    report = report_path.read_text()
    summary = (compare_dir / "summary.md").read_text().strip().splitlines()
    v1 = section(report, "Validation 1")
    v1 = [re.sub(r"^### ", "#### ", line) for line in v1 if not line.startswith("**Verdicts:**")]
    parts = [
        "### Perplexity of every run", "", *summary, "",
        "### The report's verdicts", "", *summary_rows(report, "smollm2-135m"), "",
        "### The report's tables", "", *v1,
    ]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in parts)).strip() + "\n"


def at_half(compare_dir: Path) -> str:
    """The README's table: each allocation's perplexity at 50 % with Wanda and SparseGPT (mean ± std
    over the seeds recorded), beside the paper's Llama-2-7B figures with Wanda."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    with (compare_dir / "results.csv").open() as f:
        for row in csv.DictReader(f):
            if row["method"] == "dense" or float(row["sparsity"]) == 0.5:
                groups[row["method"], row["pruning_metric"]].append(float(row["perplexity"]))

    def cell(method: str, metric: str) -> str:
        values = groups.get((method, metric))
        if not values:
            return "–"
        mean, std, n = mean_std(values)
        return f"{mean:.2f}" if method == "dense" else f"{mean:.2f} ± {std:.2f} ({n})"

    lines = [
        "| layer sparsity, 50 % | SmolLM2-135M, Wanda | SmolLM2-135M, SparseGPT | paper: Llama-2-7B, Wanda |",
        "|---|---|---|---|",
        f"| dense | {cell('dense', '-')} | {cell('dense', '-')} | {PAPER['dense']} |",
    ]
    for method in ALLOCATIONS:
        lines.append(f"| {method} | {cell(method, 'wanda')} | {cell(method, 'sparsegpt')} | {PAPER.get(method, '–')} |")
    return "\n".join(lines) + "\n"


def filled(path: Path, page: str, begin: str, end: str, text: str) -> str:
    """`page` (the text of `path`) with what lies between the markers `begin` and `end` replaced by `text`."""
    if begin not in page or end not in page:
        raise SystemExit(f"{path} has no {begin} ... {end} region to fill")
    head, rest = page.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{text}{end}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("compare_dir", type=Path)
    parser.add_argument("report", type=Path, help="report.md of `lit-activation report COMPARE_DIR`")
    parser.add_argument("--findings", type=Path, help="report.md of `lit-activation report` on counts and LLMDcos runs")
    args = parser.parse_args()
    needed = [args.compare_dir / "summary.md", args.compare_dir / "results.csv", args.report, *([args.findings] if args.findings else [])]
    for path in needed:
        if not path.is_file():
            raise SystemExit(f"{path} not found: expected a `lit-activation compare` output dir (summary.md, results.csv) and report.md files")
    regions = {PAGE: [("<!-- sweep -->", "<!-- /sweep -->", tables(args.compare_dir, args.report))],
               README: [("<!-- sweep50 -->", "<!-- /sweep50 -->", at_half(args.compare_dir))]}
    if args.findings:
        regions[PAGE].append(("<!-- findings -->", "<!-- /findings -->", "\n".join(summary_rows(args.findings.read_text(), "Finding")) + "\n"))
    pages = {}  # every page is formed before any is written: a bad input leaves them all as they were
    for path, fills in regions.items():
        pages[path] = path.read_text()
        for begin, end, text in fills:
            pages[path] = filled(path, pages[path], begin, end, text)
    for path, page in pages.items():
        path.write_text(page)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
