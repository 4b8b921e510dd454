"""`lit-activation`: the command line, one LightningCLI over ActivationModule, the data modules and the analyses.

- command.py   the console entry point `main`: the tool's help and version and `report`, without Lightning
- app.py       ActivationCLI (the subcommands, their groups, the checks before any work) and `build_cli`
- help.py      each subcommand's options laid out this project's first
- console.py   what a command prints: one line per phase; --verbose for everything, --quiet for warnings only
- errors.py    one line per mistake, with the closest option, class or name to a mistyped one
- run_dirs.py  run directories: refused when taken, removed when a failed run left them empty

Importing this package loads neither torch nor Lightning: ActivationCLI and build_cli import app.py on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lit_activation.cli.command import main
from lit_activation.public import lazy_exports

if TYPE_CHECKING:  # for type checkers and editors; at run time they load on first use
    from lit_activation.cli.app import ActivationCLI, build_cli

__all__ = ["ActivationCLI", "build_cli", "main"]

__getattr__, __dir__ = lazy_exports(__name__, {"ActivationCLI": "lit_activation.cli.app", "build_cli": "lit_activation.cli.app"})
