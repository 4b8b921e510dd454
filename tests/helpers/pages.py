"""The README's and the docs' pages as the doc tests read them: code blocks, inline code, command lines,
and the configs' comments. Every page of docs/ is read, so a page added later is checked too."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

# A fenced code block (its language tag, its text) and an inline code span (its text).
FENCE = re.compile(r"^[ \t]*```([\w-]*)[^\n]*\n(.*?)^[ \t]*```", flags=re.M | re.S)
SPAN = re.compile(r"(`+)(.+?)\1", flags=re.S)

# A line that starts a lit-activation command, or a benchmark script.
COMMAND = re.compile(r"^(?:\$ )?(lit-activation|python -m lit_activation|\.venv/bin/python benchmarks/\S+|python benchmarks/\S+)(.*)$")
# A launcher's line: the command it starts (srun lit-activation ..., torchrun ... -m lit_activation ...).
_LAUNCHED = re.compile(r"^(?:srun|torchrun .*?-m lit_activation) (.*)$")
# Environment assignments before a command (CUDA_VISIBLE_DEVICES=0 lit-activation ...).
_ENV = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language tag, its text, and its place among the page's blocks."""

    lang: str
    body: str
    index: int


@dataclass(frozen=True)
class Command:
    """One command line of a page's bash block (continuations joined, its comment dropped, a launcher's
    or environment's prefix removed), with the block it stands in and the text that follows the block."""

    line: str
    block: int
    after: str  # the page's text after this block, up to the next bash block (what it printed, if shown)

    @property
    def words(self) -> list[str]:
        return shlex.split(self.line)

    @property
    def subcommand(self) -> str | None:
        """predict, validate, compare, plan, report (None for other commands)."""
        words = self.words
        return words[1] if words[0] == "lit-activation" and len(words) > 1 and not words[1].startswith("-") else None


def blocks(text: str) -> list[Block]:
    return [Block(m.group(1), m.group(2), i) for i, m in enumerate(FENCE.finditer(text))]


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def code_spans(text: str) -> list[str]:
    """The inline code spans of the prose."""
    return [m.group(2).strip() for m in SPAN.finditer(prose(text))]


def command_line(line: str) -> str:
    """A shell line as the command it runs: its comment dropped, a launcher's or environment's prefix removed."""
    line = line.split("  #")[0].strip()
    line = _ENV.sub("", line)
    launched = _LAUNCHED.match(line)
    if launched:
        line = launched.group(1) if launched.group(1).startswith("lit-activation") else f"lit-activation {launched.group(1)}"
    return line


def commands(page: Path) -> list[Command]:
    """Every command line of the page's bash blocks, in page order."""
    text = page.read_text()
    fences = list(FENCE.finditer(text))
    out = []
    for i, fence in enumerate(fences):
        if fence.group(1) != "bash":
            continue
        following = next((f.start() for f in fences[i + 1 :] if f.group(1) == "bash"), len(text))
        after = text[fence.end() : following]
        for raw in fence.group(2).replace("\\\n", " ").splitlines():
            line = command_line(raw)
            if line and not line.startswith("#"):
                out.append(Command(line, i, after))
    return out


def tool_commands() -> list[str]:
    """The lit-activation and benchmark command lines of every page, each once."""
    return list(dict.fromkeys(c.line for page in PAGES for c in commands(page) if COMMAND.match(c.line)))


def comments(config: Path) -> str:
    """A config's comments, the header's and those after a value, without their '#'."""
    out = []
    for line in config.read_text().splitlines():
        if line.lstrip().startswith("#"):
            out.append(line.lstrip()[1:])
        elif " #" in line:
            out.append(line.split(" #", 1)[1])
    return "\n".join(out)


def value_of(words: list[str], flag: str) -> str | None:
    """The value a command line gives `flag` (the last one, as the parser takes it), or None."""
    values = [words[i + 1] for i in range(len(words) - 1) if words[i] == flag]
    return values[-1] if values else None
