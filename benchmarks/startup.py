"""How long the command takes to answer before it does any work, beside the bare imports it builds on, in one run.

    python benchmarks/startup.py                 # 5 rounds
    python benchmarks/startup.py --repeats 9 --json startup.json

Each case is a new process, timed from its start to its exit (wall) and by the CPU it used (user +
system, from the kernel's accounting of children): the interpreter alone, `import torch`,
transformers' AutoModelForCausalLM, `import lightning.pytorch`, then `lit-activation --version`,
`--help`, a subcommand's `--help` and a value the parser refuses. The cases run in rounds, one of
each per round, so that a drift of the machine's speed falls on all of them alike; medians are
reported. The targets: `--version` and `--help` within 1 s, as they load neither torch nor Lightning;
a subcommand's help and a refusal need Lightning's CLI, and come within 1.3× `import lightning.pytorch`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = Path(sys.executable).with_name("lit-activation")  # the console script a user runs
COMMAND = [str(CONSOLE)] if CONSOLE.is_file() else [sys.executable, "-m", "lit_activation"]
COUNTS, PRUNE = "configs/counts_embedded.yaml", "configs/prune_embedded.yaml"

BASELINE = "import lightning.pytorch"
# (name, command line, target: ("s", seconds) or ("x", times the baseline) or None)
CASES = [
    ("python -c pass", [sys.executable, "-c", "pass"], None),
    ("import torch", [sys.executable, "-c", "import torch"], None),
    ("transformers' AutoModelForCausalLM", [sys.executable, "-c", "from transformers import AutoModelForCausalLM"], None),
    (BASELINE, [sys.executable, "-c", BASELINE], None),
    ("lit-activation --version", [*COMMAND, "--version"], ("s", 1.0)),
    ("lit-activation --help", [*COMMAND, "--help"], ("s", 1.0)),
    ("lit-activation predict --help", [*COMMAND, "predict", "--help"], ("x", 1.3)),
    ("lit-activation validate --help", [*COMMAND, "validate", "--help"], ("x", 1.3)),
    ("predict: --model.engine.target refused", [*COMMAND, "predict", "--config", COUNTS, "--model.engine.target", "logit"], ("x", 1.3)),
    ("validate: --pruning.calibration.samples refused", [*COMMAND, "validate", "--config", PRUNE, "--pruning.calibration.samples", "x"], ("x", 1.3)),
]


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `command` in a new process, output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU seconds per case, over `repeats` rounds after one warm-up round (files into the page cache)."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in CASES}
    for round_ in range(repeats + 1):
        for name, command, _ in CASES:
            result = timed(command)
            if round_:
                runs[name].append(result)
    return {name: {"wall_s": statistics.median(w for w, _ in r), "cpu_s": statistics.median(c for _, c in r)} for name, r in runs.items()}


def verdict(target: tuple[str, float] | None, figures: dict[str, float], base: dict[str, float]) -> str:
    if target is None:
        return ""
    kind, limit = target
    if kind == "s":
        return f"≤ {limit:g} s: {'met' if figures['wall_s'] <= limit else 'NOT met'}"
    ratio = figures["wall_s"] / base["wall_s"]
    return f"≤ {limit:g}× {BASELINE}: {'met' if ratio <= limit else 'NOT met'}"


def table(results: dict[str, dict[str, float]]) -> str:
    base = results[BASELINE]
    rows = ["| case | wall s | CPU s | wall / lightning | CPU / lightning | target |", "|---|---|---|---|---|---|"]
    for name, _, target in CASES:
        r = results[name]
        rows.append(f"| `{name}` | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['wall_s'] / base['wall_s']:.2f} | "
                    f"{r['cpu_s'] / base['cpu_s']:.2f} | {verdict(target, r, base)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of every case (medians reported), after one warm-up round")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    results = measure(args.repeats)
    from machine import cpu_model  # after the runs: this process's own imports are not in them

    print(f"{cpu_model()}, {os.cpu_count()} CPUs; {args.repeats} rounds, medians")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "repeats": args.repeats, "results": results}, indent=1))


if __name__ == "__main__":
    main()
