"""Every option a page or a config's comment shows is one the command line accepts, and every name a
page shows in inline code exists in the code: a renamed option or field cannot stay in the docs.

What counts as an option: a dotted flag anywhere (`--pruning.calibration.samples`, `--model.engine.*`);
an option path in inline code (`engine.tile_mb`, `counts.init_args.model`: the end of a full path);
the names after "option" or "options"; the keys of YAML blocks (from the top) and of `key: value`
spans (the end of a path). The parsers are built once per session (conftest.py); nothing runs.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT
from tests.helpers.options import resolves
from tests.helpers.pages import CONFIGS, PAGES, blocks, code_spans, comments, prose

FLAG = re.compile(r"(?<![\w-])--([a-z_]+(?:\.(?:\w+|\*))+)")
# Inline code that is an option path: it starts with one of the command line's groups and is no file name.
OPTION_SPAN = re.compile(r"(?:model|data|trainer|pruning|zeroshot|engine)(?:\.(?:[A-Za-z_]\w*|\*))+")  # `model.layers.3...` is a module
FILE_NAME = re.compile(r"\.(?:json|csv|png|yaml|md|py|jsonl|parquet|gz|txt|sh|safetensors|gguf|bin)$")
# `FILE: problem` spans: an error line naming a file (a file name, or a placeholder such as DIR or FILE.gguf)
ERROR_LINE = re.compile(r"(?:\S*\.(?:json|csv|jsonl|parquet|gz|safetensors|gguf|bin|yaml)|[A-Z]+(?:\.\w+)?|\.\.\.\S*)")
NAMED = re.compile(r"\boptions?\s+((?:`[^`\n]+`(?:,\s*|\s+(?:and|or)\s+)?)+)")
YAML_SPAN = re.compile(r"^([\w.]+): ")
SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")  # names, and environment variables
RUN_DIR = re.compile(r"version_\d+")  # a run's directory, not a name of the code

# `key: value` spans whose key is no option of this tool, and why.
NOT_OPTIONS = {"error": "the form of an error line", "dataset_path": "a key of lm-eval's task YAML"}
# snake_case names shown in inline code that are not this project's, and whose they are.
OTHERS_NAMES = {
    "alpha_peak": "AlphaPruning's own code", "high_school_biology": "an MMLU subject",
    "gate_proj": "Qwen-MoE checkpoints' per-expert tensors (transformers' conversion mapping)",
}


def flags(text: str) -> set[str]:
    """The dotted flags of a text (code blocks included), without their dashes."""
    return set(FLAG.findall(text))


def yaml_keys(node: object, prefix: str = "") -> set[str]:
    """Every key path of a parsed YAML value (list items under their list's key)."""
    if isinstance(node, list):
        return set().union(*(yaml_keys(item, prefix) for item in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    out = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        out.add(path)
        if key != "class_path":
            out |= yaml_keys(value, f"{path}.")
    return out


def uncommented(block: str) -> str:
    """A YAML block with its commented-out keys (`# init_args: {...}`) put back, so they are checked too."""
    return re.sub(r"^(\s*)# (?=[\w.]+: )", r"\1", block, flags=re.M)


def unknown_options(text: str, known: frozenset[str], markdown: bool = True) -> list[str]:
    """The options a page (or, markdown=False, a config's comments) shows that the parsers do not accept."""
    bad = [f"--{flag}" for flag in sorted(flags(text)) if not resolves(flag, known)]
    if not markdown:
        return bad
    spans = code_spans(text)
    paths = {s for s in spans if OPTION_SPAN.fullmatch(s) and not FILE_NAME.search(s)}
    for listed in NAMED.findall(prose(text)):
        paths |= {name for name in re.findall(r"`([^`]+)`", listed) if re.fullmatch(r"[\w.]+", name)}
    for span in spans:
        match = YAML_SPAN.match(span)
        if match and match.group(1) not in NOT_OPTIONS and not ERROR_LINE.fullmatch(match.group(1)):
            try:  # a span is the inside of a flow mapping: `a: 1, b: {c: 2}`
                paths |= yaml_keys(yaml.safe_load(f"{{{span}}}"))
            except yaml.YAMLError:
                paths.add(match.group(1))
    bad += [f"`{path}`" for path in sorted(paths) if not resolves(path, known, relative=True)]
    for block in blocks(text):
        if block.lang == "yaml":
            bad += [f"yaml {key}" for key in sorted(yaml_keys(yaml.safe_load(uncommented(block.body)))) if not resolves(key, known)]
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_option_a_page_shows_is_accepted(page, cli_options):
    bad = unknown_options(page.read_text(), cli_options)
    assert bad == [], f"{page.name} shows options the command line does not accept: {bad}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_every_option_a_config_comment_shows_is_accepted(config, cli_options):
    bad = unknown_options(comments(config), cli_options, markdown=False)
    assert bad == [], f"{config.name}'s comments show options the command line does not accept: {bad}"


@functools.cache
def code_words() -> frozenset[str]:
    """Every word of the code, the tests' shared helpers, the configs and the build files: the names a
    page may show."""
    sources = [*ROOT.glob("lit_activation/**/*.py"), *ROOT.glob("callbacks/*.py"), *ROOT.glob("benchmarks/*"), *CONFIGS]
    sources += [*ROOT.glob("tests/helpers/*.py"), ROOT / "tests" / "conftest.py"]
    sources += [ROOT / "Makefile", ROOT / "pyproject.toml"]
    return frozenset(re.findall(r"\w+", " ".join(p.read_text() for p in sources if p.is_file())))


def unknown_names(text: str, words: frozenset[str]) -> list[str]:
    """snake_case names (and environment variables) shown alone in inline code that no code, config or
    build file holds."""
    return sorted({s for s in code_spans(text) if SNAKE.fullmatch(s) and s not in words and s not in OTHERS_NAMES and not RUN_DIR.fullmatch(s)})


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_name_a_page_shows_exists_in_the_code(page):
    bad = unknown_names(page.read_text(), code_words())
    assert bad == [], (
        f"{page.name} shows names that no code, config or build file holds: {bad} (renamed? If one is another project's name, "
        "add it to OTHERS_NAMES with whose it is)"
    )


def test_the_pages_show_options_for_these_tests_to_check():
    shown = set().union(*(flags(p.read_text()) for p in PAGES))
    assert len(shown) >= 25 and {"data.init_args.seqlen", "model.engine.checkpoint_blocks"} <= shown


def test_the_checks_tell_a_renamed_option_from_the_real_one(cli_options):
    """Each form of a stale option is caught, and its real name passes (the rules are not vacuous)."""
    stale = (
        "Calibration (options `calibration_samples`, `seqlen`). `counts_file` reads counts; `LIT_ACTIVATION_MEM_GB`.\n"
        "`--pruning.calibration_samples 64`, `engine.tilemb`, `trainer.callbacks.init_args.gama`, `compute_type: float32`\n"
        "```yaml\nmodel:\n  engine:\n    checkpoint: true\n```\n"
    )
    real = (
        "Calibration (options `pruning.calibration.samples`, `seqlen`). `CountsFile` reads counts; `LIT_ACTIVATION_MEMORY_GB`.\n"
        "`--pruning.calibration.samples 64`, `engine.tile_mb`, `trainer.callbacks.init_args.gamma`, `compute_dtype: float32`\n"
        "```yaml\nmodel:\n  engine:\n    checkpoint_blocks: true\n```\n"
    )
    assert unknown_options(stale, cli_options) == [
        "--pruning.calibration_samples", "`calibration_samples`", "`compute_type`", "`engine.tilemb`", "`trainer.callbacks.init_args.gama`",
        "yaml model.engine.checkpoint",
    ]
    assert unknown_options(real, cli_options) == []
    assert unknown_names(stale, code_words()) == ["LIT_ACTIVATION_MEM_GB", "calibration_samples", "counts_file"]
    assert unknown_names(real, code_words()) == []


def test_a_config_comment_with_a_stale_flag_is_caught(cli_options, tmp_path):
    config = Path(tmp_path / "x.yaml")
    config.write_text("# Overrides: --pruning.calibration.sample 64\nmodel:\n  model: x   # or --model.modle y\n")
    assert unknown_options(comments(config), cli_options, markdown=False) == ["--model.modle", "--pruning.calibration.sample"]
