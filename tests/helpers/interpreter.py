"""Whether Triton's CPU interpreter can run the engine's kernels here, as pytest marks.

The kernels' tests run in the interpreter (conftest.py sets TRITON_INTERPRET=1), so they need
triton, and an interpreter that works with the installed NumPy: Triton 3.6's (the one torch 2.11
pins) turns a runtime loop bound into a Python int with `int()` of a one-element array, which
NumPy 2.4 refuses, so every kernel with a loop fails inside the interpreter before any of its
arithmetic runs. A one-program probe tells; the tests are then skipped with the versions and the
way out, rather than failing for a reason that is not the kernels'.
"""

from __future__ import annotations

import numpy
import pytest
import torch

from lit_activation.engine import kernels

NO_TRITON = "triton is not installed (pip install triton): the fused kernels are not tested"


def _interpreter_problem() -> str | None:
    """None where a kernel with a runtime loop bound runs in the interpreter; else why not."""
    if kernels.triton is None:
        return NO_TRITON
    import triton
    import triton.language as tl

    @triton.jit
    def count(out, n):
        total = 0.0
        for _ in range(0, n):
            total += 1.0
        tl.store(out, total)

    out = torch.zeros(1)
    try:
        count[(1,)](out, 3)
    except Exception as error:  # noqa: BLE001 - any failure here is reported as the reason
        seen = f"{type(error).__name__}: {str(error).splitlines()[0][:100] if str(error) else ''}"
        if "0-dimensional arrays" in str(error):  # the NumPy 2.4 refusal described above
            versions = f"triton {triton.__version__}'s CPU interpreter cannot run a loop with numpy {numpy.__version__}"
            return f"{versions} ({seen}); use numpy < 2.4 or a newer triton (3.9 runs it)"
        return f"a kernel does not run in triton {triton.__version__}'s CPU interpreter here (TRITON_INTERPRET must be 1): {seen}"
    return None if out.item() == 3.0 else f"triton {triton.__version__}'s CPU interpreter miscounts a loop: 3 steps gave {out.item()}"


PROBLEM = _interpreter_problem()
needs_triton = pytest.mark.skipif(kernels.triton is None, reason=NO_TRITON)  # compiles or refuses: no launch
needs_interpreter = pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")  # launches kernels in the interpreter
