"""What machine a benchmark ran on: every figure is relative to it (speed-ups differ 2x between CPUs)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else the platform's processor string)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def matmul_gflops(device: str = "cpu", size: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """Measured matmul rate (GFLOP/s) of a size³ product, best of 5."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(6):  # the first is a warm-up
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def sync(device: str | torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def describe(device: str = "cpu") -> dict:
    """CPU model, threads, torch version, measured fp32 matmul GFLOP/s, and the GPU when there is one."""
    out = {
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_fp32_gflops": round(matmul_gflops(device), 1),
    }
    if torch.device(device).type == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
        out["matmul_bf16_gflops"] = round(matmul_gflops(device, 8192, torch.bfloat16), 1)
    return out


def peak_memory_gb(device: str | torch.device) -> float:
    """Peak memory of this process so far: GPU allocations on CUDA, resident set size on CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
