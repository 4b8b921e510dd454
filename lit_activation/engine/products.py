"""How the engine forms its three products, and the matmul precision pinned while it runs.

Every score needs three products per scored linear: the forward x·Wᵀ, the input gradient δ·W and
the per-sample weight gradients G_s = δ_sᵀ x_s. `IEEEProducts` forms them in plain fp32 (or in
the explicit low-precision compute dtype); `SplitProducts` from bf16 parts on tensor cores, to
the same accuracy (engine/split.py). Both run under `pinned_matmul_precision`: a process-wide
`torch.set_float32_matmul_precision("high")` (which Lightning's start-up tip invites) would
otherwise silently turn the fp32 products into one-pass TF32.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_activation.engine import linear_kernel
from lit_activation.engine.split import chained_matmul, concat_left, concat_right, split_bf16, split_linear
from lit_activation.engine.tiling import row_tiles, tile_rows

log = logging.getLogger(__name__)

_NEW_API = hasattr(torch.backends, "fp32_precision")  # torch >= 2.9: per-backend fp32 precision


def _precision_handles() -> list[tuple[object, str]]:
    """(object, attribute) of every setting that lets an fp32 matmul run below IEEE fp32."""
    cuda = torch.backends.cuda.matmul
    handles = [(cuda, "allow_bf16_reduced_precision_reduction"), (cuda, "allow_fp16_reduced_precision_reduction")]
    if _NEW_API:
        mkldnn = torch.backends.mkldnn
        handles += [(torch.backends, "fp32_precision"), (cuda, "fp32_precision"), (mkldnn, "fp32_precision"), (mkldnn.matmul, "fp32_precision")]
    return handles


def _exact_value(attribute: str) -> object:
    return "ieee" if attribute == "fp32_precision" else False


@contextmanager
def pinned_matmul_precision() -> Iterator[None]:
    """Inside, fp32 matmuls are IEEE fp32 (no TF32, no bf16 passes, no reduced-precision
    reductions), whatever the process set before; every setting is restored on exit."""
    handles = _precision_handles()
    saved = [getattr(obj, attr) for obj, attr in handles]
    legacy = None if _NEW_API else torch.get_float32_matmul_precision()
    try:
        for obj, attr in handles:
            setattr(obj, attr, _exact_value(attr))
        if legacy is not None:
            torch.set_float32_matmul_precision("highest")
        yield
    finally:
        for (obj, attr), value in zip(handles, saved, strict=True):
            setattr(obj, attr, value)
        if legacy is not None:
            torch.set_float32_matmul_precision(legacy)


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


class SplitLinear(torch.autograd.Function):
    """y = x Wᵀ + b in fp32 from bf16 parts (forward) and δ·W likewise (backward).

    A bf16-stored weight is used as it is stored (exact in one part); an fp32 one is split per
    call, unless `bf16_values` says its values are bf16 ones (a sharded bf16 model gathers them in
    fp32): then it is cast back, exactly. Only the stored weight is saved; the weight is frozen, so
    only the input gradient is formed.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, bf16_values: bool) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.bf16_values = bf16_values
        out = split_linear(x.float(), weight.to(torch.bfloat16) if bf16_values else weight)
        return out if bias is None else out + bias.float()

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None, None]:
        (weight,) = ctx.saved_tensors
        weight = weight.to(torch.bfloat16) if ctx.bf16_values else weight
        return split_linear(grad_out.float(), weight.t()), None, None, None


class KernelLinear(torch.autograd.Function):
    """y = x Wᵀ + b in fp32 from bf16 parts through the fused linear kernel (engine/linear_kernel.py),
    forward and backward (δ·W: the same kernel on Wᵀ, a view). Only the stored weight is saved (an
    fp32 one holding bf16 values is cast in registers, not copied); it is frozen, so only the input
    gradient is formed."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, bf16_values: bool) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.bf16_values = bf16_values
        out = linear_kernel.linear(x.float(), weight, bf16_values)
        return out if bias is None else out + bias.float()

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None, None, None]:
        (weight,) = ctx.saved_tensors
        return linear_kernel.linear(grad_out.float(), weight.t(), ctx.bf16_values), None, None, None


class IEEEProducts:
    """Plain products in the compute dtype: fp32 on CUDA cores or a CPU, or the explicit bf16/fp16 mode."""

    split = False

    def linear(self, x: Tensor, weight: Tensor, bias: Tensor | None, tile_bytes: int) -> Tensor:
        """x·Wᵀ + b in x's dtype; a stored low-precision W is upcast one row tile at a time."""
        if weight.dtype == x.dtype:
            return F.linear(x, weight, bias)
        bias = None if bias is None else bias.to(x.dtype)
        return UpcastLinear.apply(x, weight, bias, tile_rows(tile_bytes, weight.shape[1] * x.element_size()))

    def gradient_operands(self, by_row: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
        """The operands of G_s = by_row_s · other_s, prepared once per module."""
        return by_row, other

    def gradient(self, rows: Tensor, other: Tensor, out: Tensor, positions: int) -> Tensor:
        """One tile of per-sample gradients, (batch, rows, cols) fp32, into `out`.

        positions: the T summed over; the last T entries of the operands' K hold the full-scale
        products (all of K here; the split layout puts its small part products before them).
        """
        if rows.dtype == torch.float32:
            return torch.bmm(rows, other, out=out)
        return out.copy_(torch.bmm(rows, other))  # the explicit low-precision mode: reduced in fp32


class SplitProducts(IEEEProducts):
    """fp32-accurate products from bf16 parts (tensor cores on CUDA; emulated in fp32 elsewhere).

    weights_bf16: the linears' weights hold bf16 values (stored in bf16), so each is one exact part.
    fused_linear: the linears run through the fused linear kernel (CUDA, or Triton's interpreter).
    """

    split = True

    def __init__(self, weights_bf16: bool = False, fused_linear: bool = False) -> None:
        self.weights_bf16, self.fused_linear = weights_bf16, fused_linear

    def linear(self, x: Tensor, weight: Tensor, bias: Tensor | None, tile_bytes: int) -> Tensor:
        if self.fused_linear:
            return KernelLinear.apply(x, weight, bias, self.weights_bf16)
        return SplitLinear.apply(x, weight, bias, self.weights_bf16)

    def gradient_operands(self, by_row: Tensor, other: Tensor) -> tuple[Tensor, Tensor]:
        # the parts side by side along the positions (K), smallest products first: one bf16 GEMM
        # per tile sums all six part products in fp32 (long inputs: the full-scale ones in chains);
        # a CPU upcasts them once here instead of once per tile
        left, right = split_bf16(by_row), split_bf16(other)
        rows, cols = concat_left(left, len(right)), concat_right(right, len(left))
        return (rows, cols) if by_row.is_cuda else (rows.float(), cols.float())

    def gradient(self, rows: Tensor, other: Tensor, out: Tensor, positions: int) -> Tensor:
        return chained_matmul(rows, other, full=positions, out=out)


def products_for(split: bool, weights_bf16: bool = False, fused_linear: bool = False) -> IEEEProducts:
    """The products of a pass: bf16 parts (`split`; `weights_bf16`: weights exact in one part;
    `fused_linear`: the linears through the fused linear kernel) or plain."""
    return SplitProducts(weights_bf16, fused_linear) if split else IEEEProducts()


_CHECKED: dict[str, bool] = {}
SPLIT_TOLERANCE = 4 * 512 * 2.0**-24  # the probe's sums run over 512 terms: fp32's own bound, with room


def split_works_on(device: torch.device) -> bool:
    """Whether split products reach fp32 accuracy on `device`: checked once per device and process
    against fp64 on random operands of the probe's shapes. A device (or torch) whose bf16 GEMMs do
    not give fp32 sums, or lack `out_dtype`, falls back to plain fp32 with one warning."""
    key = str(device)
    if key not in _CHECKED:
        _CHECKED[key] = _probe_split(device)
    return _CHECKED[key]


def _probe_split(device: torch.device) -> bool:
    g = torch.Generator().manual_seed(0)
    delta, x = torch.randn(4, 96, 512, generator=g), torch.randn(4, 512, 80, generator=g)
    weight = torch.randn(80, 512, generator=g).bfloat16()
    try:
        with pinned_matmul_precision():
            products = SplitProducts()
            rows, cols = products.gradient_operands(delta.to(device), x.to(device))
            grad = products.gradient(rows, cols, torch.empty(4, 96, 80, device=device), delta.shape[-1]).cpu()
            linear = split_linear(x.transpose(1, 2).to(device), weight.to(device)).cpu()
    except (RuntimeError, TypeError) as err:
        log.warning("Split products do not run on %s (%s); scores use plain fp32 products there", device, err)
        return False
    exact_grad, scale_grad = delta.double() @ x.double(), delta.double().abs() @ x.double().abs()
    exact_linear = x.transpose(1, 2).double() @ weight.double().t()
    scale_linear = x.transpose(1, 2).double().abs() @ weight.double().abs().t()
    error = max(
        float(((grad.double() - exact_grad).abs() / scale_grad).max()), float(((linear.double() - exact_linear).abs() / scale_linear).max())
    )
    if error > SPLIT_TOLERANCE:
        log.warning("Split products on %s miss fp32 accuracy (%.1e > %.1e); scores use plain fp32 products there", device, error, SPLIT_TOLERANCE)
        return False
    return True
