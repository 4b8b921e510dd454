"""The `report` command: its arguments, the sections in the paper's order, and report.md / report.json written once."""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_activation import outputs
from lit_activation.report import findings
from lit_activation.report.experts import expert_removal, experts_section
from lit_activation.report.finding1 import finding1
from lit_activation.report.llmdcos import finding2, finding3
from lit_activation.report.markdown import Section, fmt, fmt_ci, table, tally
from lit_activation.report.perplexity import validation1
from lit_activation.report.runs import Run, load_run, versions
from lit_activation.report.sts import allpairs, validation3
from lit_activation.report.zeroshot import validation2, zero_shot_runs

DEFINITIONS = 'docs/method.md, "Findings report: operational definitions"'


def next_version(parent: Path) -> Path:
    """Create and return parent/version_N, N one above the highest there (claimed atomically by mkdir)."""
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        path = parent / f"version_{max((n for n, _ in versions(parent)), default=-1) + 1}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another report took it meanwhile
            continue


def _link(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def render(sections: Sequence[Section], runs: Sequence[Run], out: Path, seed: int, resamples: int) -> str:
    """The whole report.md."""
    lines = ["# Findings report", "", (
        f"Statistics and verdicts as defined in {DEFINITIONS} (and `lit_activation/report/findings.py`). Intervals: 95 % percentile bootstrap, "
        f"{resamples} resamples, seed {seed}. Layers are 0-indexed (layer 0 = the paper's layer 1). Verdicts: held / not held / inconclusive; "
        "\"not run\" when no input speaks to a claim, \"cannot assess\" when an input lacks what the claim needs."
    ), "", "## Inputs", ""]
    lines += table(["run", "directory", "holds"], [[r.name, r.path, ", ".join(sorted(r.data))] for r in runs])
    lines += ["## Summary", ""]
    lines += table(["claim", "verdict", "parts", "statistic", "95 % interval"],
                   [[a.claim, a.label, tally(a) or "–", fmt(a.statistic), fmt_ci(a)] for s in sections for a in s.summary])
    for s in sections:
        lines += [f"## {s.title}", "", *s.lines]
        for fig in s.figures:
            lines += [f"![{fig.parent.name}/{fig.name}]({_link(fig, out)})", ""]
    return "\n".join(lines).rstrip() + "\n"


def build(runs: Sequence[Run], seed: int, resamples: int) -> list[Section]:
    """Every section, in the paper's order."""
    experts = experts_section(runs, seed, resamples)  # only where a counts run is of a mixture of experts
    removal = expert_removal(runs)  # only where a compare run removed whole experts
    return [
        finding1(runs, seed, resamples), *([experts] if experts else []), finding2(runs, seed, resamples), finding3(runs, seed, resamples),
        validation1(runs), *([removal] if removal else []), validation2(runs), validation3(runs, seed, resamples), allpairs(runs), zero_shot_runs(runs),
    ]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage: the CLI turns it into one `error:` line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(f"report: {message}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(prog="lit-activation report", description="One Markdown/JSON report of the paper's findings from finished runs.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run dirs (runs/NAME/version_N), logger dirs (runs/NAME: newest run) or compare dirs")
    parser.add_argument("--output", default="runs/report", help="parent directory; the report goes to OUTPUT/version_N (never overwritten)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap generator")
    parser.add_argument("--resamples", type=int, default=findings.RESAMPLES, help="bootstrap resamples per interval (>= 100)")
    args = parser.parse_args(list(argv))
    if args.resamples < 100:
        raise ValueError(f"--resamples must be >= 100 for a 95 % interval, got {args.resamples}")
    return args


@dataclass(frozen=True)
class Report:
    """A written report: its two files and its summary, one verdict per claim (report.json's `summary`:
    claim, verdict, label, statistic, interval, reason, detail)."""

    markdown: Path
    json: Path
    summary: list[dict[str, Any]]


def write_report(
    run_dirs: Sequence[str | Path], output: str | Path = "runs/report", seed: int = 0, resamples: int = findings.RESAMPLES
) -> Report:
    """The findings report of finished runs, as `lit-activation report` writes it: OUTPUT/version_N/report.md
    and report.json (never overwritten).

    Args:
        run_dirs: run dirs (runs/NAME/version_N), logger dirs (runs/NAME: their newest run) or compare dirs.
        output: the parent directory of the report's version_N.
        seed, resamples: the bootstrap's seed and resamples per interval (>= 100).
    """
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100 for a 95 % interval, got {resamples}")
    if not run_dirs:
        raise ValueError("run_dirs is empty; give at least one run dir")
    runs = [load_run(i, Path(p)) for i, p in enumerate(run_dirs, 1)]  # every input checked before any work
    outputs.check_can_create(Path(output), "--output")
    sections = build(runs, seed, resamples)
    out = next_version(Path(output))
    summary = [a.as_dict() for s in sections for a in s.summary]
    try:
        markdown = outputs.write_text(out / "report.md", render(sections, runs, out, seed, resamples))
        record = outputs.write_json(out / "report.json", {
            "settings": {"seed": seed, "resamples": resamples, "confidence": findings.CONFIDENCE, "definitions": DEFINITIONS},
            "inputs": [{"run": r.name, "path": str(r.path), "holds": sorted(r.data), "figures": [str(f) for f in r.figures()]} for r in runs],
            "summary": summary,
            "sections": {s.key: {"title": s.title, "summary": [a.as_dict() for a in s.summary], "parts": [a.as_dict() for a in s.parts]} for s in sections},
        })
    except BaseException:  # a full disk, an interrupt: no version holds half a report
        shutil.rmtree(out, ignore_errors=True)
        raise
    return Report(markdown, record, summary)


def main(argv: Sequence[str]) -> Path:
    """Read the run dirs, write OUTPUT/version_N/report.md and report.json; print the report's path last."""
    args = parse_args(argv)
    report = write_report(args.run_dirs, args.output, args.seed, args.resamples)
    for a in report.summary:
        print(f"{a['claim']}: {a['label']}")
    print(report.markdown)
    return report.markdown
