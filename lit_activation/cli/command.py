"""The `lit-activation` command before Lightning: the tool's own help and version, the checks of the
command line that need no parser, and `report`; a subcommand that LightningCLI runs is handed to app.py.

Nothing here imports torch or Lightning (tests/cli/test_imports.py), so that `--help`, `--version`,
a mistyped subcommand and `report` answer at once; app.py and what it imports load only for a
subcommand that needs them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from lit_activation import __version__
from lit_activation.cli.console import console, split_flags, take_quiet
from lit_activation.cli.errors import USER_ERRORS, closest, lost_connection, one_line

DEBUG_ENV = "LIT_ACTIVATION_DEBUG"


VERBOSE_ENV = "LIT_ACTIVATION_VERBOSE"


QUIET_ENV = "LIT_ACTIVATION_QUIET"


SUBCOMMAND_HELP = {
    "predict": "score parameters on inputs and run the analyses: counts, LLMDcos, STS, all pairs",
    "validate": "prune the model, then measure perplexity (and zero-shot accuracy)",
    "compare": "a resumable sweep: dense vs allocations × metrics × sparsities × seeds",
    "plan": "the predicted peak memory of a config, per device; loads nothing",
    "report": "the findings report of finished runs",
}


SUBCOMMANDS = tuple(SUBCOMMAND_HELP)


FLAGS_HELP = (
    "  --verbose     show all that PyTorch Lightning and the libraries print (or LIT_ACTIVATION_VERBOSE=1)\n"
    "  --quiet       only warnings and errors, no progress bar (or LIT_ACTIVATION_QUIET=1)\n"
    "  --debug       show the traceback of an error (or LIT_ACTIVATION_DEBUG=1)"
)


def tool_help() -> str:
    """`lit-activation --help`: the subcommands, one line each, and how to get a subcommand's help."""
    rows = "\n".join(f"  {name:<12}{text}" for name, text in SUBCOMMAND_HELP.items())
    return (
        "usage: lit-activation SUBCOMMAND [--config CONFIG] [--OPTION VALUE ...]\n\n"
        "Taylor activation patterns of LLM parameters, LLMDcos and activation-guided pruning.\n\n"
        f"subcommands:\n{rows}\n\n"
        "options:\n  -h, --help    show this help and exit\n  --version     print the version and exit\n"
        f"{FLAGS_HELP}\n\n"
        "A subcommand's options: lit-activation SUBCOMMAND --help, e.g.\n"
        "  lit-activation predict --help\n"
        "  lit-activation predict --config configs/counts_embedded.yaml"
    )


def check_command_line(args: list[str]) -> None:
    """What the parser would report without naming it: a subcommand that does not exist (its list
    lacks `report`, which is dispatched before it) and a config file that is not YAML."""
    if args and not args[0].startswith("-") and args[0] not in SUBCOMMANDS:
        best = closest(args[0], SUBCOMMANDS)
        hint = f"did you mean {best}? " if best else ""
        raise ValueError(f"unknown subcommand {args[0]!r}; {hint}accepted: {', '.join(SUBCOMMANDS)}")
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("--config", "-c") and Path(value).is_file():
            try:  # the syntax only: what the values mean is jsonargparse's to read (it keeps dates as text)
                yaml.compose(Path(value).read_text(), Loader=yaml.SafeLoader)
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise ValueError(f"{flag} {value} is not valid YAML: {getattr(err, 'problem', None) or err}{where}") from None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `lit-activation` console script and of `python -m lit_activation`.

    `argv` (default: the command line) lets tests call it. `report` reads finished runs only, so it
    is dispatched before LightningCLI (lit_activation/report/), under the same one-line errors.
    Logging and warnings are set for the command's life (`console`). Returns None: the
    console-script wrapper calls sys.exit(main()), and any other value would be printed and turned
    into exit status 1.
    """
    debug, verbose, args = split_flags(sys.argv[1:] if argv is None else argv)
    quiet, args = take_quiet(args)
    if argv is None:
        sys.argv[1:] = args  # LightningCLI reads sys.argv, and so do the processes Lightning starts for other ranks
        for given, variable in ((debug, DEBUG_ENV), (verbose, VERBOSE_ENV), (quiet, QUIET_ENV)):
            if given:
                os.environ[variable] = "1"  # which those processes inherit (and the parser's default bar reads)
    debug = debug or bool(os.environ.get(DEBUG_ENV))
    verbose = verbose or bool(os.environ.get(VERBOSE_ENV))
    quiet = quiet or bool(os.environ.get(QUIET_ENV))
    try:
        _run(args, argv is None, debug, verbose, quiet)
    except BrokenPipeError:  # the output was piped into a reader that stopped (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _run(args: list[str], from_command_line: bool, debug: bool, verbose: bool, quiet: bool) -> None:
    """Dispatch a command: the tool's help or version, `report`, or a LightningCLI subcommand; a user's
    mistake becomes one line and exit status 2, a rank lost in a collective one line and status 1."""
    try:
        if not args or args[0] in ("-h", "--help"):
            print(tool_help())
            return
        if args[0] == "--version":
            print(f"lit-activation {__version__}")
            return
        check_command_line(args)
        if args[0] == "report":
            from lit_activation import report

            with console(verbose, quiet):
                report.main(args[1:])
            return
        # Lightning, and the classes a subcommand's parser lists; imported before `console`, as Lightning
        # sets its loggers' levels when it loads
        from lit_activation.cli.app import build_cli

        with console(verbose, quiet):
            build_cli(None if from_command_line else args)  # None: LightningCLI reads sys.argv, as before
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except (RuntimeError, OSError) as err:  # a collective that failed: was a rank lost?
        from lit_activation.distributed.heartbeat import Heartbeat

        lost = Heartbeat.active.explain() if Heartbeat.active is not None and lost_connection(err) else None
        if lost is None or debug:
            raise
        print(f"error: {lost}", file=sys.stderr, flush=True)
        sys.exit(1)
