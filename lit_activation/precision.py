"""Run a model's forward and backward in fp32 while its weights stay stored in bf16/fp16.

Scores must be exact fp32 (docs/method.md §9) even when a 7B model is held in bf16. Upcasting the
whole model would double its memory, so inside `compute_precision(model, torch.float32)`:

- every linear (nn.Linear, GPT-2's Conv1D, lm_head included) runs through `UpcastLinear`, which
  upcasts its weight one row tile at a time in the forward and again in the backward. Autograd
  keeps only the stored low-precision weight, so no fp32 copy of any large weight outlives a tile;
- the small parameters (norms, biases, position tables) are upcast in place for the duration and
  restored afterwards;
- plain `nn.Embedding` lookups need nothing: a looked-up bf16 row is exact in fp32 and type
  promotion carries it into the fp32 stream. Embedding subclasses that compute after the lookup
  (Gemma's scaled embedding) are upcast like the small parameters.

The result equals the computation of an fp32 model holding the same (bf16-rounded) weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from lit_activation.sharding import is_sharded
from lit_activation.tiling import row_tiles, tile_rows


class UpcastLinear(torch.autograd.Function):
    """y = x Wᵀ + b with W (out, in) stored in low precision and used in `x.dtype`, tile by tile.

    Saves the stored weight, not an upcast copy; the backward upcasts the same tiles again. The
    weight is frozen, so only the input gradient is formed.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, tile_rows: int) -> Tensor:
        out = x.new_empty((*x.shape[:-1], weight.shape[0]))
        for rows in row_tiles(weight.shape[0], tile_rows):
            part = out[..., rows]
            part.copy_(x @ weight[rows].to(x.dtype).t())
            if bias is not None:
                part.add_(bias[rows].to(x.dtype))
        ctx.save_for_backward(weight)
        ctx.tile_rows = tile_rows
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None, None]:
        (weight,) = ctx.saved_tensors
        grad_x = None
        for rows in row_tiles(weight.shape[0], ctx.tile_rows):
            term = grad_out[..., rows] @ weight[rows].to(grad_out.dtype)
            grad_x = term if grad_x is None else grad_x.add_(term)
        return grad_x, None, None, None


def linear_in(module: nn.Module, x: Tensor, tile_bytes: int = 64 << 20) -> Tensor:
    """The module's linear map applied to x in x's dtype, upcasting a stored low-precision weight
    tile by tile. Bypasses the module's hooks (a caller inside a hook may use it)."""
    # Conv1D stores W as (in, out) and computes x W + b: the same as a linear with Wᵀ.
    weight = module.weight.t() if isinstance(module, Conv1D) else module.weight
    if weight.dtype == x.dtype:
        return F.linear(x, weight, module.bias)
    bias = None if module.bias is None else module.bias.to(x.dtype)
    return UpcastLinear.apply(x, weight, bias, tile_rows(tile_bytes, weight.shape[1] * x.element_size()))


def _upcast_forward(module: nn.Module, tile_bytes: int, x: Tensor) -> Tensor:
    return linear_in(module, x, tile_bytes)


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, Conv1D))


def _small_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters that are neither a linear's weight nor a plain embedding table (kept as stored)."""
    exempt = {id(m.weight) for m in model.modules() if _is_linear(m) or type(m) is nn.Embedding}
    return [p for p in model.parameters() if id(p) not in exempt]


@contextmanager
def compute_precision(model: nn.Module, dtype: torch.dtype, tile_bytes: int = 64 << 20) -> Iterator[None]:
    """Inside, `model` computes in `dtype` whatever its stored dtype; everything is restored on exit.

    Feed it inputs (embeddings) in `dtype`. Lower precision than the storage is refused: casting
    down would silently change the weights being scored.
    """
    stored = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if all(d == dtype for d in stored) or any(is_sharded(p) for p in model.parameters()):
        # A sharded model computes in the dtype its FSDP2 mixed-precision policy gathers weights in.
        yield
        return
    if any(torch.finfo(d).bits > torch.finfo(dtype).bits for d in stored):
        raise ValueError(f"compute_dtype {dtype} is below the weights' dtype {sorted(map(str, stored))}; use the weights' dtype or float32")
    patched = [m for m in model.modules() if _is_linear(m) and m.weight.dtype != dtype]
    small = [(p, p.data) for p in _small_parameters(model) if p.is_floating_point() and p.dtype != dtype]
    for module in patched:
        module.forward = partial(_upcast_forward, module, tile_bytes)
    for p, data in small:
        p.data = data.to(dtype)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # the class's forward again
        for p, data in small:
            p.data = data
