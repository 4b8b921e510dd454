"""Every command line that a config header or the README shows is parsed (or run) by a test.

Config headers follow one grammar: the command that runs the config (`#   lit-activation <sub>
--config configs/<name>.yaml`), other full commands on their own `#   lit-activation ...` lines,
and `# <Label>: --flag value ...` lines whose flags are overrides of the config's command: two
spaces separate independent overrides, single spaces join the flags of one.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lit_activation.cli import build_cli

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def header(config: Path) -> list[str]:
    """The comment lines before the first YAML key, without their '#'."""
    lines = []
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


def fragments(text: str) -> list[list[str]]:
    """Independent overrides of a header line: groups separated by two spaces (one group's flags go
    together, e.g. a class and its options)."""
    groups = [shlex.split(group) for group in re.split(r" {2,}", text.strip()) if group.strip()]
    for group in groups:
        assert group[0].startswith("--"), f"a header override must start with a flag, got {text!r}"
    return groups


def commands_and_overrides(config: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(full commands, override fragments) of a config's header, paths made absolute."""
    commands, overrides = [], []
    for line in header(config):
        if line.startswith("lit-activation "):
            commands.append(shlex.split(line.replace("configs/", f"{ROOT / 'configs'}/"))[1:])
        elif "--" in line:
            overrides += fragments(line[line.index("--") :])  # the label ends where the first flag starts
    return commands, overrides


def parses(args: list[str]) -> None:
    """The CLI accepts `args`: --print_config parses everything, prints, and exits 0 without running."""
    with pytest.raises(SystemExit) as done:
        build_cli([*args, "--print_config"])
    assert done.value.code in (0, None), args


CASES = [(c, cmd) for c in CONFIGS for cmd in commands_and_overrides(c)[0]]


@pytest.mark.parametrize(("config", "command"), CASES, ids=[f"{c.stem}:{' '.join(cmd[:1] + cmd[3:])[:40]}" for c, cmd in CASES])
def test_header_commands_parse(config, command, capsys):
    parses(command)


def test_header_overrides_parse_with_the_configs_command(capsys):
    checked = 0
    for config in CONFIGS:
        commands, overrides = commands_and_overrides(config)
        own = next(cmd for cmd in commands if cmd[2].endswith(config.name))
        for fragment in overrides:
            parses([*own, *fragment])
            checked += 1
    assert checked >= 20  # the headers document overrides: they are all parsed


README_COMMAND = re.compile(r"^(?:\$ )?(lit-activation|python -m lit_activation|\.venv/bin/python benchmarks/\S+|python benchmarks/\S+)(.*)$")


def readme_commands() -> list[str]:
    """Command lines of the README's bash blocks (continuation lines joined)."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if README_COMMAND.match(line):
                out.append(line)
    return out


@pytest.mark.parametrize("line", readme_commands())
def test_readme_commands_parse(line, tmp_path, capsys):
    words = shlex.split(line.replace("configs/", f"{ROOT / 'configs'}/"))
    if words[0].endswith("python") or words[0] == "python":  # a benchmark script: its arguments parse
        script = ROOT / words[1]
        done = subprocess.run([sys.executable, str(script), *words[2:], "--help"], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-1500:]
        return
    args = words[1:] if words[0] == "lit-activation" else words[3:]
    if args and args[0] == "report":
        return  # executed by tests/test_report.py on real run directories
    parses(args)


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 8
