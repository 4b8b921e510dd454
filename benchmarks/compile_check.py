"""The engine's Triton kernels compiled for a GPU that is not here: what each launch costs in registers,
spills and shared memory, and whether its products run on tensor cores.

    python benchmarks/compile_check.py            # every launch benchmarks/gpu.py sweeps, for sm_90 (H100/H200)
    python benchmarks/compile_check.py --quick    # the kernels' default launches only (what the tests run)

Triton compiles ahead of time for a named target without a device (its wheel ships ptxas), so a
launch that spills registers, overflows shared memory, or fails to compile at all shows here,
before a scarce GPU session spends its minutes on it. The CPU interpreter the tests use runs the
kernels' arithmetic but compiles nothing, and accepts code that the real compiler would reject.
Registers and spills come from `ptxas -v` on the kernel's PTX; "wgmma" counts Hopper's
tensor-core instructions in it (0 for IEEE fp32 products, which run on CUDA cores).
Run with TRITON_INTERPRET unset or 0: under the interpreter there is nothing to compile.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED_LIMIT = 227 * 1024  # bytes of shared memory one block may use on sm_90 (H100/H200)
MAX_REGISTERS = 255  # per thread; a launch at the limit spills or is close to it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the kernels' default launches only")
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability × 10 (90: Hopper)")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: TRITON_INTERPRET=1 replaces compilation with the CPU interpreter; run with TRITON_INTERPRET=0", file=sys.stderr)
        return 2
    try:
        import triton  # noqa: F401 - only to tell a missing triton apart
    except ImportError:
        print("error: triton is not installed (pip install triton)", file=sys.stderr)
        return 2
    from gpu import FUSED_CONFIGS, FUSED_FIELDS, LINEAR_CONFIGS, LINEAR_FIELDS

    from lit_activation.engine import kernels, linear_kernel

    reduction = [tuple(getattr(kernels, f) for f in FUSED_FIELDS)] + ([] if args.quick else list(FUSED_CONFIGS))
    linears = [tuple(getattr(linear_kernel, f) for f in LINEAR_FIELDS)] + ([] if args.quick else list(LINEAR_CONFIGS))
    print(f"sm_{args.arch}, triton {triton.__version__}\n")
    print("| kernel | products | launch | shared KB | registers | spilled bytes (stores / loads) | wgmma | compile s |\n|---|---|---|---|---|---|---|---|")
    failures = 0
    for config in dict.fromkeys(reduction):
        for mode in REDUCTION_MODES:
            failures += _row("weighted_abs_sum", mode, config, args.arch, _reduction_source(kernels, mode, config))
    for config in dict.fromkeys(linears):
        for mode in LINEAR_MODES:
            failures += _row("linear", mode, config, args.arch, _linear_source(linear_kernel, mode, config))
    return 1 if failures else 0


def _signature(fn, operands: dict[str, str], constexprs: dict) -> dict[str, str]:  # noqa: ANN001 - a triton JITFunction
    """Triton's signature of `fn`: the named operands' types, constexpr markers, every other argument an i32."""
    return {name: "constexpr" if name in constexprs else operands.get(name, "i32") for name in fn.arg_names}


# The reduction's variants: TMA loads (aligned operands, Hopper) of split operands summed in one chain
# (up to chain_length's reach, e.g. 128 positions) or in several; per-element pointer loads of fp32
# operands (matmul ieee: never TMA, whose blocks spill in IEEE products) and of unaligned split ones.
REDUCTION_MODES = ("split, one chain", "split, chained", "ieee, pointers", "split, chained, pointers")


def _reduction_source(kernels, mode: str, config: tuple[int, ...]):  # noqa: ANN001, ANN202 - module, ASTSource
    from triton.compiler import ASTSource

    br, bc, bk, _, _, group = config
    dtype, tma = ("fp32" if mode.startswith("ieee") else "bf16"), "pointers" not in mode
    constexprs = {"IEEE": mode.startswith("ieee"), "UPCAST": False, "BR": br, "BC": bc, "BK": bk, "GROUP": group, "CHAINED": "chained" in mode, "TMA": tma}
    if tma:  # host-side tensor descriptors of one sample's block each
        operands = {"a": f"tensordesc<{dtype}[1, {br}, {bk}]>", "b": f"tensordesc<{dtype}[1, {bk}, {bc}]>"}
    else:
        operands = {"a": f"*{dtype}", "b": f"*{dtype}"}
    operands.update(w="*fp32", out="*fp32")
    return ASTSource(kernels._weighted_abs_sum, _signature(kernels._weighted_abs_sum, operands, constexprs), constexprs)


# The linear kernel's variants: TMA loads (aligned widths, Hopper) of a bf16 weight as stored (x·Wᵀ),
# of its transpose (δ·W, GPT-2's Conv1D), of an fp32 weight (six part products) and of an fp32 one
# holding bf16 values (a sharded bf16 model); and per-element pointer loads (unaligned widths).
LINEAR_MODES = ("split, bf16 W", "split, bf16 Wᵀ (δ·W)", "split, fp32 W", "split, fp32 Wᵀ (δ·W)", "split, fp32 W of bf16 values", "split, bf16 W, pointers")


def _linear_source(linear_kernel, mode: str, config: tuple[int, ...]):  # noqa: ANN001, ANN202
    from triton.compiler import ASTSource

    bm, bn, bk, _, _, group = config
    dtype = "fp32" if "fp32 W" in mode else "bf16"
    tma, w_kn = "pointers" not in mode, "Wᵀ" in mode
    parts = 3 if mode.startswith("split, fp32 W") and "bf16 values" not in mode else 1
    constexprs = {"W_PARTS": parts, "UPCAST": False, "TMA": tma, "W_KN": w_kn, "BM": bm, "BN": bn, "BK": bk, "GROUP": group}
    if tma:  # host-side tensor descriptors, typed by dtype and block
        operands = {"x": f"tensordesc<fp32[{bm}, {bk}]>", "w": f"tensordesc<{dtype}[{bk}, {bn}]>" if w_kn else f"tensordesc<{dtype}[{bn}, {bk}]>"}
    else:
        operands = {"x": "*fp32", "w": f"*{dtype}"}
    operands["out"] = "*fp32"
    return ASTSource(linear_kernel._linear, _signature(linear_kernel._linear, operands, constexprs), constexprs)


def _row(kernel: str, mode: str, config: tuple[int, ...], arch: int, source) -> int:  # noqa: ANN001
    """Compile one launch and print its row; 1 if it failed to compile (the row says why), else 0."""
    import triton
    from gpu import launch_label, one_line
    from triton.backends.compiler import GPUTarget

    from lit_activation.engine.kernels import FP_FUSION

    warps, stages = config[3], config[4]
    launch = launch_label(config).removeprefix("blocks ")
    start = time.perf_counter()
    try:
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps, "num_stages": stages, "enable_fp_fusion": FP_FUSION})
    except Exception as error:  # noqa: BLE001 - the row reports it; the other launches still compile
        print(f"| {kernel} | {mode} | {launch} | failed: {one_line(error, 120)} | | | | |")
        return 1
    seconds = time.perf_counter() - start
    ptx = compiled.asm["ptx"]
    registers, spills = _ptxas_usage(ptx, arch)
    shared = compiled.metadata.shared
    flags = " (over the limit)" if shared > SHARED_LIMIT else ""
    wgmma = len(re.findall(r"wgmma\.mma_async", ptx))
    print(f"| {kernel} | {mode} | {launch} | {shared / 1024:.0f}{flags} | {registers} | {spills} | {wgmma} | {seconds:.1f} |", flush=True)
    return 0


def _ptxas_usage(ptx: str, arch: int) -> tuple[str, str]:
    """(registers, 'stores / loads' spilled bytes) from `ptxas -v` on the PTX (triton ships ptxas)."""
    from triton.backends.nvidia.compiler import get_ptxas

    target = re.search(r"\.target (\S+)", ptx).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.ptx"
        path.write_text(ptx)
        try:
            done = subprocess.run([_ptxas_path(get_ptxas, arch), "-v", "--gpu-name", target, str(path), "-o", os.devnull], capture_output=True, text=True)
        except Exception:  # noqa: BLE001 - compiled already (triton ran its own ptxas); only the usage is unknown
            return "?", "?"
    registers = re.search(r"Used (\d+) registers", done.stderr)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", done.stderr)
    return (registers.group(1) if registers else "?"), (f"{spills.group(1)} / {spills.group(2)}" if spills else "?")


def _ptxas_path(get_ptxas, arch: int) -> str:  # noqa: ANN001 - triton's function
    """The ptxas binary triton uses: `get_ptxas` takes the arch in some versions and not in others,
    and returns a tool with a `.path` or a (path, version) pair."""
    try:
        tool = get_ptxas(arch)
    except TypeError:
        tool = get_ptxas()
    return tool.path if hasattr(tool, "path") else tool[0]


if __name__ == "__main__":
    sys.exit(main())
