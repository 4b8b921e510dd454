"""A page reads only runs it made: every run directory that a command of a page reads (a `report`
line's runs, a `--config runs/...`, a counts file under `runs/`) is written by a command earlier on the
same page, so a reader who runs the page from the top has it.

What a command writes is read from its parsed options: predict and validate write under their logger
(`save_dir/name`), compare its `output_dir`, report its `--output`; `make demo` runs the Makefile's
demo commands. Nothing runs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.cli import parse_command
from tests.helpers.pages import PAGES, commands, value_of

RUN_PATH = re.compile(r"(?<![\w/.-])(runs/[^\s,;'\"{}\]]+)")
# Options whose values a command writes, not reads.
WRITES = ("--output_dir", "--output", "--trainer.logger.init_args.save_dir", "--trainer.logger.init_args.name", "--pruning.save_dir")


def make_target(target: str) -> list[list[str]]:
    """The lit-activation commands of a Makefile target, as words."""
    recipe = re.search(rf"^{target}:.*\n((?:\t.*\n?)+)", (ROOT / "Makefile").read_text(), flags=re.M)
    lines = [line.strip().replace("$(CLI)", "lit-activation") for line in recipe.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("lit-activation ")]


def reads_and_writes(words: list[str], parsers: dict) -> tuple[list[str], list[str]]:
    """(run paths a lit-activation command reads, run directories it writes)."""
    sub = words[1] if len(words) > 1 else None
    if sub not in ("predict", "validate", "compare", "report", "plan"):
        return [], []
    written_values = {i + 1 for i, w in enumerate(words[:-1]) if w in WRITES}
    reads = [path for i, w in enumerate(words[2:], 2) if i not in written_values for path in RUN_PATH.findall(w)]
    if sub == "report":
        options = {words[i]: words[i + 1] for i in range(2, len(words) - 1) if words[i].startswith("--")}
        reads = [w for i, w in enumerate(words[2:], 2) if not w.startswith("--") and not words[i - 1].startswith("--")]
        return reads, [options.get("--output", "runs/report")]
    if sub == "plan":
        return reads, []
    saved = value_of(words, "--config")
    if saved.startswith("runs/"):  # a run's saved config.yaml: it runs again under the same logger, in a new version
        return reads, [str(Path(saved).parents[1])]
    config = parse_command(parsers, words)
    if sub == "compare":
        return reads, [config.output_dir]
    logger = config.trainer.logger.init_args
    return reads, [f"{logger.save_dir}/{logger.name}"]


def unmade_runs(page: Path, parsers: dict) -> list[str]:
    """Run paths that a command of the page reads before any command of the page wrote them."""
    made: list[str] = []
    unmade = []
    for command in commands(page):
        expanded = make_target("demo") if command.words[:2] == ["make", "demo"] else [command.words]
        for words in expanded:
            if words[0] != "lit-activation":
                continue
            reads, writes = reads_and_writes(words, parsers)
            unmade += [f"{path} (read by: {command.line})" for path in reads if not any(path == d or path.startswith(f"{d}/") for d in made)]
            made += [w.rstrip("/") for w in writes]
    return unmade


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_page_reads_only_the_runs_it_made(page, parsers):
    unmade = unmade_runs(page, parsers)
    assert unmade == [], f"{page.name}: runs that no earlier command of the page makes: {unmade}"


def test_the_pages_read_runs_for_this_test_to_check(parsers):
    read = [path for page in PAGES for c in commands(page) if c.words[0] == "lit-activation" for path in reads_and_writes(c.words, parsers)[0]]
    assert len(read) >= 8 and any("/version_0/" in path for path in read)  # report lines, a saved config, a counts file


def test_a_report_of_a_run_the_page_never_made_is_caught(parsers, tmp_path):
    page = tmp_path / "page.md"
    made = "```bash\nlit-activation predict --config configs/counts_embedded.yaml\nmake demo\n```\n"
    page.write_text(made + "```bash\nlit-activation report runs/counts_embedded runs/compare_quick runs/allpairs_embedded/version_0\n```\n")
    assert unmade_runs(page, parsers) == []
    page.write_text("```bash\nlit-activation predict --config configs/counts_embedded.yaml\n"
                    "lit-activation report runs/counts_embedded runs/similarity_embedded\n"
                    "lit-activation predict --config runs/compare_quick/version_0/config.yaml --trainer.logger.init_args.save_dir runs/elsewhere\n```\n")
    assert [u.split(" ")[0] for u in unmade_runs(page, parsers)] == ["runs/similarity_embedded", "runs/compare_quick/version_0/config.yaml"]
    page.write_text("```bash\nlit-activation report runs/counts_embedded\nlit-activation predict --config configs/counts_embedded.yaml\n```\n")
    assert [u.split(" ")[0] for u in unmade_runs(page, parsers)] == ["runs/counts_embedded"]  # made after it is read
