"""Row tiles: how a module's per-sample work is cut so that its memory stays under a budget.

A module's per-sample scores are (batch, rows, cols) floats: 7.5 GB for a 70B MLP weight at batch 8.
They are formed and reduced a few rows at a time, so peak memory holds one tile whatever the
module's size, and the elementwise passes over a tile (|·|, the batch sum, ×|W|) run while it
is still in cache.
"""

from __future__ import annotations

from collections.abc import Iterator

# The smallest budgets at the speed plateau of measured sweeps (docs/design.md, "Tile sizes").
DEFAULT_TILE_MB = {"cpu": 4.0, "cuda": 1024.0}


def tile_rows(budget_bytes: float, bytes_per_row: int) -> int:
    """How many rows of `bytes_per_row` fit in the budget (at least one)."""
    if budget_bytes <= 0:
        raise ValueError(f"tile budget must be > 0 bytes, got {budget_bytes}")
    return max(1, int(budget_bytes // bytes_per_row))


def row_tiles(n_rows: int, rows_per_tile: int, start: int = 0, stop: int | None = None) -> Iterator[slice]:
    """Consecutive slices of at most `rows_per_tile` rows covering [start, stop) of n_rows."""
    stop = n_rows if stop is None else stop
    for first in range(start, stop, rows_per_tile):
        yield slice(first, min(first + rows_per_tile, stop))


def default_tile_mb(device_type: str) -> float:
    """The benchmarked default tile budget for a device type (cpu, cuda; others as cuda)."""
    return DEFAULT_TILE_MB.get(device_type, DEFAULT_TILE_MB["cuda"])


def budget_bytes(tile_mb: float | None, device_type: str) -> float:
    """The tile budget in bytes: `tile_mb` when set, else the default for the device type."""
    return (tile_mb or default_tile_mb(device_type)) * 2**20
