"""Peak memory of a Finding 1 counts run with 1 dataset against the same run with 4 (same process shape).

    python benchmarks/memory.py                        # embedded default, 4 samples per dataset
    python benchmarks/memory.py --samples 16 --repeats 3

Each run is the real command (`lit-activation predict --config configs/counts_embedded.yaml`) in a
fresh child process; its peak resident set size is the operating system's own accounting of that
child (ru_maxrss), read in a per-run wrapper so runs never share a maximum. The accumulator is one
fp32 sum per parameter whatever the number of datasets (datasets are finalised one after another),
so the ratio should sit near 1.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOUR = ["humaneval", "reviews", "wiki", "news"]


def counts_command(datasets: list[str], samples: int, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "lit_activation", "predict", "--config", str(ROOT / "configs" / "counts_embedded.yaml"),
        "--data.init_args.datasets", json.dumps(datasets), "--data.init_args.num_samples", str(samples),
        "--trainer.logger.init_args.save_dir", str(out), "--trainer.enable_progress_bar", "false",
    ]


def peak_rss_gb(command: list[str]) -> float:
    """Run `command` in a wrapper process and return the command's own peak RSS (GB = 2^30 bytes)."""
    wrapper = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); " \
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"run failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return int(done.stdout.split()[-1]) * 1024 / 2**30  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4, help="samples per dataset")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of each; medians are reported")
    args = parser.parse_args()
    peaks: dict[str, list[float]] = {"1 dataset": [], "4 datasets": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):  # alternate, so a drifting machine touches both alike
            peaks["1 dataset"].append(peak_rss_gb(counts_command(["wiki"], args.samples, Path(tmp) / f"one{i}")))
            peaks["4 datasets"].append(peak_rss_gb(counts_command(FOUR, args.samples, Path(tmp) / f"four{i}")))
    one, four = (statistics.median(v) for v in peaks.values())
    print(json.dumps({"samples_per_dataset": args.samples, "peak_rss_gb": peaks, "ratio_4_over_1": four / one, "self_rss_gb":
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}, indent=1))
    print(f"peak RSS: 1 dataset {one:.2f} GB, 4 datasets {four:.2f} GB, ratio {four / one:.3f}")


if __name__ == "__main__":
    main()
