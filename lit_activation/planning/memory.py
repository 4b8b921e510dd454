"""This process's memory: what it holds, what the device has free, and handing freed memory back.

A run has phases (on-the-fly counts, pruning, evaluation) whose tensors have different sizes. Freed
memory that an allocator keeps (glibc's heap on the host, torch's cache on a GPU) is not reused by
the next phase's differently sized tensors, so without `release_memory()` between phases the peaks
of consecutive phases add up instead of taking turns.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
from pathlib import Path

import torch

GB = 2**30
MEMORY_LIMIT_ENV = "LIT_ACTIVATION_MEMORY_GB"  # overrides what the device reports (e.g. to plan a smaller GPU)


def process_memory() -> int:
    """What this process holds now: resident set size (Linux), else 0."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


def available_memory(device_type: str) -> int | None:
    """Memory a run may use per device: $LIT_ACTIVATION_MEMORY_GB, else what the device reports free
    (plus what this process already holds, which a plan counts)."""
    if os.environ.get(MEMORY_LIMIT_ENV):
        return int(float(os.environ[MEMORY_LIMIT_ENV]) * GB)
    if device_type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return free + torch.cuda.memory_reserved()
    meminfo = Path("/proc/meminfo")
    if device_type == "cpu" and meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 + process_memory()
    return None


def release_memory() -> None:
    """Return memory freed by a finished phase to the system before the next phase starts."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # not glibc (e.g. musl): nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)
