"""`lit-activation` that halts right after a run wrote its first finished unit of work, so that a test can SIGKILL it there.

    python -m tests.helpers.halting_child UNITS MARKER -- <lit-activation arguments>

Once UNITS progress files have been written (callbacks/base.py, `Progress`: a Finding 1 dataset, a
batch of groups), MARKER is created and the process waits: a run killed in its middle, as the OOM
killer or a lost node would leave it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lit_activation.callbacks.base import Progress
from lit_activation.cli import main


def halt_after(units: int, marker: Path) -> None:
    written = []

    def halting(save):  # noqa: ANN001, ANN202 - Progress.save_json / save_tensors
        def saved(self, key, record) -> None:  # noqa: ANN001
            save(self, key, record)
            written.append(key)
            if len(written) >= units:
                marker.touch()
                while True:
                    time.sleep(1)

        return saved

    Progress.save_json = halting(Progress.save_json)
    Progress.save_tensors = halting(Progress.save_tensors)


if __name__ == "__main__":
    units, marker, separator, *args = sys.argv[1:]
    halt_after(int(units), Path(marker))
    main(args)
