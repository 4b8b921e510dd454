"""The report's Markdown: numbers, intervals, tables and the sections they make up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_activation.report import findings


@dataclass
class Section:
    """One part of the report: its summary rows, its Markdown and its JSON."""

    key: str
    title: str
    summary: list[findings.Assessment]
    lines: list[str]
    parts: list[findings.Assessment] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def fmt(x: Any, digits: int = 3) -> str:
    """A number with `digits` significant digits; '–' for none/NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (bool, str)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}"


def fmt_ci(a: findings.Assessment) -> str:
    return f"[{fmt(a.interval[0])}, {fmt(a.interval[1])}]" if a.interval else "–"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


def not_run_section(key: str, title: str, why: str, descriptive: bool = False) -> Section:
    """A section no input speaks to: says so (never empty); descriptive sections stay out of the summary."""
    a = findings.not_run(title, why)
    return Section(key, title, [] if descriptive else [a], [f"**Not run:** {why}.", ""], [a])


def tally(a: findings.Assessment) -> str:
    """'3/3 held' for a combined claim, '' for a single one."""
    d = a.detail
    if "parts" not in d:
        return ""
    counts = [f"{d['held']}/{d['parts']} held"] + [f"{d[k]} {k.replace('_', ' ')}" for k in ("not_held", "inconclusive", "unassessed") if d.get(k)]
    return ", ".join(counts)


def rests_on(text: str) -> str:
    return f"*Rests on:* {text}"


def verdicts(summary: Sequence[findings.Assessment]) -> list[str]:
    """A section's opening line: each of its claims with its verdict."""
    return ["**Verdicts:** " + "; ".join(f"{a.claim}: {a.label}" for a in summary), ""]
