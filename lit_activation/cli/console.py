"""What a command prints, for its life only: one line per phase, this project's warnings one line each; --verbose
shows everything the libraries print, --quiet only warnings and errors."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import TextIO

from lit_activation.deprecated import DeprecatedPath

# Loggers quieted unless --verbose: Lightning's banner, tips and seed lines are INFO, the hub client's
# retries WARNING; the libraries' errors still show.
QUIET_LEVELS = {
    "lightning.pytorch": logging.WARNING, "lightning.fabric": logging.WARNING, "pytorch_lightning": logging.WARNING,
    "lightning_fabric": logging.WARNING, "huggingface_hub": logging.ERROR,
}


_BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0", "null", "none"}


class ConsoleFormatter(logging.Formatter):
    """This project's log lines as a user reads them: the message; a warning or error says which it is."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    """warnings.showwarning for the console: `warning: <message>` on one line, without where it was raised."""
    print(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr, flush=True)


@contextlib.contextmanager
def _logging(verbose: bool, quiet: bool = False) -> Iterator[None]:
    """Log lines for a command's life: this project's as ConsoleFormatter says them and the libraries'
    quieted (QUIET_LEVELS); `verbose`: every logger's INFO lines, named; `quiet`: this project's
    warnings and errors only. Restored after."""
    project, root = logging.getLogger("lit_activation"), logging.getLogger()
    touched = [project, root, logging.getLogger("gensim"), *map(logging.getLogger, QUIET_LEVELS)]
    saved = [(logger, logger.level, logger.propagate) for logger in touched]
    handler = logging.StreamHandler()
    # verbose: on the root logger, as logging.basicConfig would (not when the caller has set one up)
    target = (None if root.handlers else root) if verbose else project
    if verbose:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.INFO)
    else:
        handler.setFormatter(ConsoleFormatter())
        project.propagate = False  # its lines are said once, here
        for name, level in QUIET_LEVELS.items():
            logging.getLogger(name).setLevel(level)
    project.setLevel(logging.WARNING if quiet and not verbose else logging.INFO)
    logging.getLogger("gensim").setLevel(logging.WARNING)  # its INFO lines are noise here, even verbose
    if target is not None:
        target.addHandler(handler)
    try:
        yield
    finally:
        if target is not None:
            target.removeHandler(handler)
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate


@contextlib.contextmanager
def console(verbose: bool, quiet: bool = False) -> Iterator[None]:
    """What a command prints, for its life only (logging and warnings are restored after): one line per
    phase (this project's log lines), Lightning's progress bar, and only this project's warnings, one line
    each (DeprecatedPath, the layout's); `verbose`: all that Lightning and the libraries print; `quiet`:
    no phase or status lines (warnings and errors still)."""
    with warnings.catch_warnings(), _logging(verbose, quiet):
        if not verbose:
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"lit_activation(\.|$)")
            warnings.filterwarnings("default", category=DeprecatedPath)
            warnings.showwarning = one_line_warning  # the documented hook; catch_warnings restores it
        yield


def split_flags(args: Sequence[str]) -> tuple[bool, bool, list[str]]:
    """(--debug given, --verbose given, the other arguments). A `--verbose` followed by true/false is
    validate's own option (Lightning's results table), not this one."""
    debug = verbose = False
    rest: list[str] = []
    for i, word in enumerate(args):
        following = args[i + 1].lower() if i + 1 < len(args) else None
        if word == "--debug":
            debug = True
        elif word == "--verbose" and following not in _BOOLEAN_WORDS:
            verbose = True
        else:
            rest.append(word)
    return debug, verbose, rest


def take_quiet(args: Sequence[str]) -> tuple[bool, list[str]]:
    """(--quiet given, the other arguments)."""
    return "--quiet" in args, [word for word in args if word != "--quiet"]


def interactive() -> bool:
    """Whether a person watches stderr (a terminal): progress shows only then, as usual."""
    return sys.stderr.isatty()
