"""The engine's settings: one typed object that the module, the planner and the benchmarks pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from lit_activation.engine.targets import check_target
from lit_activation.models.loading import DTYPES

MATMULS: tuple[str, ...] = ("auto", "ieee", "split")

# One module's rows [start, stop) to score; a sharded run scores each rank's own rows only.
RowRanges = dict[str, tuple[int, int]]


@dataclass(frozen=True)
class EngineSettings:
    """How Taylor scores are computed (docs/method.md §1, §9).

    Attributes:
        target: D(s), whose gradient defines the score: `max_logit` (the paper), `log_prob`, `loss`.
        compute_dtype: the forward and backward's dtype. Whatever the weights' stored dtype,
            `float32` (default) gives exact fp32 scores, upcasting one weight tile at a time (no
            fp32 copy of the model); the weights' own bf16/fp16 is the fast, approximate mode;
            `float64` a reference for accuracy checks (CPU speed, scores still handed over in fp32).
        matmul: how fp32 products are formed. `ieee`: plain fp32 (a GPU's CUDA cores). `split`:
            from bf16 parts on tensor cores, as accurate as fp32 (engine/split.py), several times
            faster on GPUs, slower on CPUs. `auto` (default): `split` on CUDA, `ieee` elsewhere.
            Either way the engine sets the process's fp32 matmul precision for its own products
            and restores it after, so `torch.set_float32_matmul_precision` never changes a score.
        tile_mb: budget of one tile of per-sample scores (None: the default per device type).
        checkpoint_blocks: recompute each block's forward in the backward (a third more compute).
            The backward then holds one decoder block's activations instead of every block's.
        fused: Finding 1's reduction in one Triton kernel per tile (CUDA). Its |W| ⊙ Σ_s |G_s| is
            formed in registers (engine/kernels.py), so the per-sample products never go through
            memory; same arithmetic as the plain path. Off by default until benchmarks/gpu.py has timed it.
        fused_linear: the linears' split products in one Triton kernel each (CUDA). Each of x·Wᵀ and
            δ·W with x split into bf16 parts in registers, the chains promoted there
            (engine/linear_kernel.py), instead of cuBLAS GEMMs over parts in memory. Split products
            only (float32 compute, `matmul` split, or auto on CUDA); off by default until
            benchmarks/gpu.py has timed it against cuBLAS.
        rows: per module, the rows [start, stop) to score (None: all). Set by a sharded run for
            each rank's own rows; leave it unset.
    """

    target: Literal["max_logit", "log_prob", "loss"] = "max_logit"
    compute_dtype: Literal["float32", "bfloat16", "float16", "float64"] = "float32"
    matmul: Literal["auto", "ieee", "split"] = "auto"
    tile_mb: float | None = None
    checkpoint_blocks: bool = False
    fused: bool = False
    fused_linear: bool = False
    rows: RowRanges | None = None

    def __post_init__(self) -> None:
        check_target(self.target)
        if self.compute_dtype not in DTYPES:
            raise ValueError(f"Unknown compute_dtype {self.compute_dtype!r}; accepted: {sorted(DTYPES)}")
        if self.matmul not in MATMULS:
            raise ValueError(f"Unknown matmul {self.matmul!r}; accepted: {list(MATMULS)}")
        if self.tile_mb is not None and not self.tile_mb > 0:
            raise ValueError(f"tile_mb must be > 0 (MB), got {self.tile_mb}")
        if self.fused_linear and (self.compute_dtype != "float32" or self.matmul == "ieee"):  # it forms split products only
            raise ValueError(
                f"fused_linear: true fuses split products (compute_dtype float32, matmul split or auto), "
                f"got compute_dtype {self.compute_dtype!r}, matmul {self.matmul!r}; accepted with these: fused_linear false"
            )

    @property
    def dtype(self) -> torch.dtype:
        """compute_dtype as a torch dtype."""
        return DTYPES[self.compute_dtype]

    def split_products(self, device: torch.device | str) -> bool:
        """Whether fp32 products come from bf16 parts on this device (only for fp32 compute)."""
        if self.dtype != torch.float32:
            return False
        return self.matmul == "split" or (self.matmul == "auto" and torch.device(device).type == "cuda")

    def check_fused_linear(self, device: torch.device | str, split: bool) -> None:
        """One line (ValueError) where `fused_linear` meets a pass of plain products on `device`
        (`split`: what the pass forms): the kernel forms split products only."""
        if not self.fused_linear or split:
            return
        device = torch.device(device)
        reason = (
            f"split products failed the check on {device.type} (see the warning above)"
            if self.split_products(device)
            else f"matmul {self.matmul!r} forms plain ones on {device.type}"
        )
        raise ValueError(f"engine.fused_linear: true fuses split products, and {reason}; accepted here: fused_linear false")

    def cache_key(self) -> tuple:
        """A hashable identity (rows as a sorted tuple), for caches of simulated peaks."""
        rows = tuple(sorted((self.rows or {}).items()))
        return (self.target, self.compute_dtype, self.matmul, self.tile_mb, self.checkpoint_blocks, self.fused, self.fused_linear, rows)
