"""What the tests share: benchmark files in their real layouts, naive computations, process runners, probes.

- benchmark_files.py  small files in each benchmark's real field layout, written by the tests
- damage.py           Hypothesis strategies that damage a valid file (cut short, random bytes, a field out or mistyped)
- naive.py            independent computations: per-sample autograd loops, the paper's formulas written out
- tolerant.py         comparisons that hold under fp32 rounding (gaps, thresholds, ties)
- allocations.py      what a callback allocates, measured (the memory plan's tests)
- processes.py        runs of the CLI on one or several CPU processes (gloo): the session's pool, or new ones
- pool.py             the pool: processes that import once and run each command as the ranks of a new process group
- tokens.py           each corpus tokenized once per test process (a memo of samples.token_stream)
- probe.py            test-only callbacks: what each rank holds
- nudge.py            moves every batched score by a few ulps (LIT_ACTIVATION_TEST_NUDGE_ULPS)
- interpreter.py      whether Triton's CPU interpreter can run the kernels here
- reference_values.py recorded outputs of the embedded default (a regression guard, not a proof)
- trainers.py         a Lightning Trainer as the analyses' callbacks run under
- engine.py           the engine's tests' shared batches, fp64 references and error measures
- host.py             the host-exit spy (nothing parameter-sized leaves the device)
- cli.py              the CLI built with its subcommand recorded, not run; each subcommand's parser
- pages.py, options.py the README's and the docs' pages as the doc tests read them; every option path the CLI accepts
- phase_peak.py, compare_child.py, halting_child.py, pool_worker.py  scripts the tests run in a child process
- startup/            sitecustomize.py, which installs the nudge in those child processes
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
STARTUP = Path(__file__).resolve().parent / "startup"  # alone on the path: nothing here shadows a package


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts: offline, one thread, `tests.helpers` importable,
    and startup/ first on the path for its sitecustomize (the nudge switch)."""
    return {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(STARTUP), str(ROOT)]), **extra,
    }
