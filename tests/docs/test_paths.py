"""Every file, directory, module and class a page or a config's comment names exists: a file that moved
or a class that was renamed cannot stay in the docs.

Repository paths are those that start at the repository's root (`benchmarks/gpu.py`, `.ci/run`) or in
the package (`engine/products.py`, `lit_activation/report/`); a bare `name.py` must be some file of the
repository; the entries of a layout tree (a code block of `dir/` lines and indented names) are paths
under their directory. Hub ids, URLs, and the user's own paths (`runs/`, `data/`, `~/`) are not.
Class paths (`lit_activation.pruning.allocations.Uniform`, `torch.bucketize`) must import; a CamelCase
name in inline code must be a class or function of this project or of the libraries it names.
"""

from __future__ import annotations

import functools
import importlib
import re
import subprocess
from pathlib import Path

import pytest

from lit_activation.data.registry import REGISTRY
from tests.helpers import ROOT
from tests.helpers.pages import CONFIGS, PAGES, blocks, code_spans, comments

PACKAGE = ROOT / "lit_activation"
TOP = {p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name == ".ci"} - {".venv", "runs", "build"}
SUBPACKAGES = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")} - {"data"}  # `data/x.jsonl`: a user's file
URL = re.compile(r"\w+://\S+")
PATH = re.compile(r"(?<![\w./~<>{}-])((?:\.?[\w-]+/)+[\w.-]*)")
BARE_PY = re.compile(r"(?<![\w./-])([\w-]+\.py)\b")
DOTTED = re.compile(r"(?<![\w.])((?:lit_activation|lightning|torch|transformers|scipy|numpy)(?:\.[A-Za-z_]\w*)+)")
CAMEL = re.compile(r"([A-Z]\w*[a-z]\w*)(?:\.\w+)*(?:\(.*\))?")
# Where a CamelCase name a page shows may come from besides this project.
LIBRARIES = (
    "torch", "torch.nn", "transformers", "transformers.pytorch_utils", "lightning.pytorch", "lightning.pytorch.strategies",
    "lightning.pytorch.loggers", "lightning.pytorch.cli", "lm_eval.models.huggingface",
)


@functools.cache
def repository_files() -> frozenset[str]:
    """The repository's files (tracked, or new and not ignored), and their directories (with and
    without a trailing /)."""
    listed = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]  # a file being written counts before its commit
    try:
        files = subprocess.run(listed, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked archive): what is on disk
        skipped = {".git", ".venv", "runs", "build", "__pycache__"}
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and not skipped & set(p.relative_to(ROOT).parts)]
    dirs = {str(Path(f).parent) for f in files} | {str(p) for f in files for p in Path(f).parents}
    return frozenset(set(files) | dirs | {d + "/" for d in dirs})


def repository_path(token: str) -> str | None:
    """The path a token names inside the repository (relative to the root), or None when it is no
    repository path (a hub id, a user's file)."""
    first = token.split("/")[0]
    if first in TOP:
        return token
    if first in SUBPACKAGES or (first == "data" and token.endswith(".py")):
        return f"lit_activation/{token}"
    return None


def tree_paths(body: str) -> list[str]:
    """The paths a layout tree names: `dir/` lines, then names indented under them (the first word of
    each line; a further `x.py:` in its description is a file beside it)."""
    out, root = [], None
    for line in body.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):  # `dir/`, `dir/  its description`, or `a/  b/  c/`
            groups = re.split(r"\s{2,}", line.strip())
            listed = groups if all(re.fullmatch(r"[\w.-]+/", g) for g in groups) else groups[:1]
            out += listed
            root = listed[0] if len(groups) == 1 else None
            continue
        if root is not None:
            name, _, description = line.strip().partition(" ")
            out.append(root + name)
            out += [root + extra for extra in re.findall(r"([\w]+\.py):", description)]
    return out


def named_paths(text: str, markdown: bool = True) -> set[str]:
    """The repository paths a page (or config comment) names."""
    text = URL.sub("", text)
    found = {path for token in PATH.findall(text) if (path := repository_path(token.rstrip(".")))}
    if markdown:
        for block in blocks(text):
            if block.lang == "" and re.match(r"[\w.-]+/\s*\n", block.body):
                found |= set(tree_paths(block.body))
    return found


def missing_paths(text: str, markdown: bool = True) -> list[str]:
    have = repository_files()
    basenames = {Path(f).name for f in have}
    missing = [p for p in sorted(named_paths(text, markdown)) if p not in have]
    missing += [f"{name} (no such file anywhere)" for name in sorted(set(BARE_PY.findall(URL.sub("", text)))) if name not in basenames]
    return missing


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_repository_path_a_page_names_exists(page):
    missing = missing_paths(page.read_text())
    assert missing == [], f"{page.name} names files that are not in the repository: {missing}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_every_repository_path_a_config_comment_names_exists(config):
    missing = missing_paths(comments(config), markdown=False)
    assert missing == [], f"{config.name}: {missing}"


def imports(dotted: str) -> bool:
    """Whether a dotted name is a module, or an attribute reached from the longest importable module."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@functools.cache
def project_names() -> frozenset[str]:
    """The classes, functions and constants this project defines."""
    sources = " ".join(p.read_text() for p in [*PACKAGE.glob("**/*.py"), *ROOT.glob("callbacks/*.py")])
    found = re.findall(r"^\s*(?:class|def) (\w+)|^(\w+)\s*[:=]", sources, flags=re.M)
    return frozenset(name for pair in found for name in pair if name)


def unknown_classes(text: str, markdown: bool = True) -> list[str]:
    """Class paths that do not import, and CamelCase names in inline code that nothing defines."""
    bad = [d for d in sorted(set(DOTTED.findall(URL.sub("", text)))) if not imports(d)]
    if not markdown:
        return bad
    own = project_names()
    for span in sorted(set(code_spans(text))):
        relative = re.fullmatch(r"(\w+)\.(\w+)\.(\w+)", span)  # `analyses.counts.dataset_summary`
        if relative and (PACKAGE / relative.group(1) / f"{relative.group(2)}.py").is_file() and not imports(f"lit_activation.{span}"):
            bad.append(span)
        camel = CAMEL.fullmatch(span)
        if camel and camel.group(1) not in own and not any(hasattr(importlib.import_module(m), camel.group(1)) for m in LIBRARIES):
            bad.append(span)
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_class_a_page_names_exists(page):
    bad = unknown_classes(page.read_text())
    assert bad == [], f"{page.name} names classes or modules that do not exist: {bad}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_every_class_path_of_a_config_imports(config):
    bad = unknown_classes(config.read_text(), markdown=False)
    assert bad == [], f"{config.name}: {bad}"


def test_the_checks_catch_a_moved_file_and_a_renamed_class():
    stale = (
        "See `lit_activation/counts.py`, engine/product.py and nosuch.py.\n"
        "`lit_activation.pruning.allocations.Uniformm`, `CountFile`, `analyses.counts.summary`.\n"
        "```\nlit_activation/\n  engine/     the engine\n  cli.py      the CLI\n```\n"
    )
    real = (
        "See `lit_activation/analyses/counts.py`, engine/products.py and app.py; meta-llama/Llama-2-7b-hf, data/boolq.jsonl, runs/x/.\n"
        "`lit_activation.pruning.allocations.Uniform`, `CountsFile`, `analyses.counts.dataset_summary`, `ModelParallelStrategy`.\n"
        "```\nlit_activation/\n  engine/     the engine\n  cli/        the CLI\n```\n"
    )
    assert missing_paths(stale) == [
        "lit_activation/cli.py", "lit_activation/counts.py", "lit_activation/engine/product.py", "nosuch.py (no such file anywhere)",
    ]
    assert missing_paths(real) == []
    assert unknown_classes(stale) == ["lit_activation.pruning.allocations.Uniformm", "CountFile", "analyses.counts.summary"]
    assert unknown_classes(real) == []


EXAMPLE_FILE = re.compile(r"(?<![\w/.-])data/([\w.-]+)")


def example_file_names(texts: list[str]) -> dict[str, set[str]]:
    """The example files (`data/...`) the texts name, grouped by the dataset each is a file of (the
    registered name it starts with; demonstrations, MMLU's auxiliary_train split, apart)."""
    groups: dict[str, set[str]] = {}
    for name in {n for text in texts for n in EXAMPLE_FILE.findall(text)}:
        dataset = max((d for d in REGISTRY if name.lower().startswith(d)), key=len, default=name)
        groups.setdefault(dataset + (" demonstrations" if "auxiliary_train" in name else ""), set()).add(name)
    return groups


def test_each_example_file_has_one_name_everywhere():
    """The same file of a benchmark is called by one name on every page and in every config comment,
    so that a user who made it once can use it in every command."""
    groups = example_file_names([p.read_text() for p in PAGES] + [comments(c) for c in CONFIGS])
    assert {"mmlu", "boolq", "c4", "wikitext2"} <= set(groups)
    assert {d: sorted(n) for d, n in groups.items() if len(n) > 1} == {}
    assert example_file_names(["data/mmlu.jsonl data/mmlu_test.parquet data/mmlu_auxiliary_train.jsonl"]) == {
        "mmlu": {"mmlu.jsonl", "mmlu_test.parquet"}, "mmlu demonstrations": {"mmlu_auxiliary_train.jsonl"},
    }
