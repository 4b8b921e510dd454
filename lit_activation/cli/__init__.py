"""`lit-activation`: the command line, one LightningCLI over ActivationModule, the data modules and the analyses.

- app.py       ActivationCLI (the subcommands, their groups, the checks before any work) and `main`
- help.py      the tool's own help, and each subcommand's options laid out this project's first
- console.py   what a command prints: one line per phase; --verbose for everything
- errors.py    one line per mistake, with the closest option, class or name to a mistyped one
- run_dirs.py  run directories: refused when taken, removed when a failed run left them empty
"""

from lit_activation.cli.app import ActivationCLI, build_cli, main

__all__ = ["ActivationCLI", "build_cli", "main"]
