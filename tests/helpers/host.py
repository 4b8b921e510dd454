"""The host-exit spy: the largest tensor the project's own code copies to the host (see HostExits)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from unittest import mock

import torch

import lit_activation


class HostExits(contextlib.ExitStack):
    """Records the largest tensor that the project's own code sends to the host (.cpu(), .tolist(),
    .numpy(), .item(), float(), int()), even when it is on the host already: on a CPU-only machine
    the call is still what would copy it from a GPU. Lightning's own moves (e.g. the model back to
    the CPU at teardown) and `.to(device)` (models call it with their own device) are left out.

    The methods themselves are wrapped, not spied through a TorchFunctionMode: a mode is off inside
    the torch call it is handling, so it never sees the score tiles, which reach the reducers in
    hooks that run inside `torch.autograd.grad`."""

    OURS = (str(Path(lit_activation.__file__).parent), str(Path(lit_activation.__file__).parents[1] / "callbacks"))
    EXITS = ("cpu", "tolist", "numpy", "item", "__float__", "__int__")

    def __enter__(self) -> HostExits:
        super().__enter__()
        self.largest = 0
        for name in self.EXITS:
            self.enter_context(mock.patch.object(torch.Tensor, name, self._spy(getattr(torch.Tensor, name))))
        return self

    def _spy(self, exit_):  # noqa: ANN001, ANN202 - a Tensor method and its stand-in
        def spied(tensor, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if sys._getframe(1).f_code.co_filename.startswith(self.OURS):
                self.largest = max(self.largest, tensor.numel())
            return exit_(tensor, *args, **kwargs)

        return spied
