"""`lit-activation compare` that halts inside one run, so that tests/test_compare.py can SIGKILL it there.

    python tests/compare_child.py RUN_NAME MARKER -- <compare arguments>

When RUN_NAME has pruned (its pruning.json written) and before its perplexity is measured, MARKER
is created and the process waits: a run killed in its middle, as a user's Ctrl-\\ or the OOM killer
would leave it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lit_activation.callbacks.pruning import Pruning
from lit_activation.cli import main


def halt_inside(run_name: str, marker: Path) -> None:
    original = Pruning._write

    def write(trainer, out: Path, record: dict) -> None:  # noqa: ANN001
        original(trainer, out, record)
        if out.name == run_name:
            marker.touch()
            while True:
                time.sleep(1)

    Pruning._write = staticmethod(write)


if __name__ == "__main__":
    run_name, marker, separator, *args = sys.argv[1:]
    halt_inside(run_name, Path(marker))
    main(["compare", *args])
