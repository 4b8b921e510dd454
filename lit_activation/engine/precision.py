"""Run a model's forward and backward in fp32 while its weights stay stored in bf16/fp16.

Inside `compute_precision(model, torch.float32, products)` each linear upcasts its stored weight one
row tile at a time, the small parameters are upcast for the duration, and no fp32 copy of a large
weight outlives a tile: the result equals an fp32 model holding the same bf16-rounded weights
(docs/design.md, "fp32 compute from bf16 weights").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from lit_activation.distributed.sharding import is_sharded
from lit_activation.engine.products import IEEEProducts
from lit_activation.models.experts import fused_parameters


def _linear_forward(module: nn.Module, products: IEEEProducts, tile_bytes: int, x: Tensor) -> Tensor:
    # Conv1D stores W as (in, out) and computes x W + b: the same as a linear with Wᵀ.
    weight = module.weight.t() if isinstance(module, Conv1D) else module.weight
    return products.linear(x, weight, module.bias, tile_bytes)


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, Conv1D))


def _small_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters that are neither a linear's weight, a plain embedding table nor a fused experts
    tensor (those stay as stored: a linear upcasts a tile, the routed forward one expert's slice)."""
    exempt = {id(m.weight) for m in model.modules() if _is_linear(m) or type(m) is nn.Embedding}
    exempt |= {id(p) for p in fused_parameters(model)}
    return [p for p in model.parameters() if id(p) not in exempt]


@contextmanager
def compute_precision(model: nn.Module, dtype: torch.dtype, products: IEEEProducts | None = None, tile_bytes: int = 64 << 20) -> Iterator[None]:
    """Inside, `model` computes in `dtype` with `products`, whatever its stored dtype; everything is
    restored on exit.

    Feed it inputs (embeddings) in `dtype`. Lower precision than the storage is refused: casting
    down would silently change the weights being scored.
    """
    products = products or IEEEProducts()
    params = list(model.parameters())
    sharded = any(is_sharded(p) for p in params)
    stored = {p.dtype for p in params if p.is_floating_point()}
    if not sharded and any(torch.finfo(d).bits > torch.finfo(dtype).bits for d in stored):
        raise ValueError(f"compute_dtype {dtype} is below the weights' dtype {sorted(map(str, stored))}; use the weights' dtype or float32")
    linears = [m for m in model.modules() if _is_linear(m)]
    patched = linears if products.split else [] if sharded else [m for m in linears if m.weight.dtype != dtype]
    small = [] if sharded else [(p, p.data) for p in _small_parameters(model) if p.is_floating_point() and p.dtype != dtype]
    for module in patched:
        module.forward = partial(_linear_forward, module, products, tile_bytes)
    for p, data in small:
        p.data = data.to(dtype)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # the class's forward again
        for p, data in small:
            p.data = data
