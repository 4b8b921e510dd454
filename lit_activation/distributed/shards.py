"""Shards: how partial results of processes that hold different rows of the same weights combine.

A sharded run (FSDP2) gives each rank of a shard group some rows of every weight. A statistic over
all rows (a count, a sum, an extreme) is then formed from each rank's part: `Shards` carries the
three ways to combine them. `LOCAL` is one process holding every row; distributed/sharding.py builds
the collective one for a shard group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Shards:
    """How partial results from processes holding different rows are combined."""

    sum: Callable[[Tensor], Tensor] = lambda t: t
    min: Callable[[float], float] = lambda x: x
    max: Callable[[float], float] = lambda x: x


LOCAL = Shards()
