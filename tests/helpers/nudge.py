"""A switch that perturbs every batched score by a few ulps, to show the tests do not hang on float ties.

    LIT_ACTIVATION_TEST_NUDGE_ULPS=4 .venv/bin/pytest tests/test_similarity.py tests/test_counts.py

When the variable is set, each |G_s| tile the scorer hands to its consumers is multiplied by
(1 + u · 2⁻²³) with u a seeded random integer in [-k, k] per element: the values a different
CPU, BLAS or batch shape could produce. Tests that compare the batched values with a naive
computation must still pass: their tolerances and threshold margins must not hinge on the last bits.
Installed by conftest.py and, for the processes the DDP tests launch, by sitecustomize.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch

VARIABLE = "LIT_ACTIVATION_TEST_NUDGE_ULPS"


def nudged(tiles: Iterator, ulps: int, generator: torch.Generator) -> Iterator:
    for tile in tiles:
        u = torch.randint(-ulps, ulps + 1, tile.abs_grad.shape, generator=generator).to(tile.abs_grad)
        tile.abs_grad.mul_(1 + u * 2.0**-23)
        yield tile


def install_from_env() -> int:
    """Wrap the scorer's tile generator when the variable is set; returns the ulps (0: not installed)."""
    ulps = int(os.environ.get(VARIABLE, "0") or 0)
    if ulps <= 0:
        return 0
    from lit_activation import scores

    if getattr(scores._tiles, "nudged", False):
        return ulps
    original, generator = scores._tiles, torch.Generator().manual_seed(ulps)

    def tiles(*args, **kwargs) -> Iterator:
        return nudged(original(*args, **kwargs), ulps, generator)

    tiles.nudged = True
    scores._tiles = tiles
    return ulps
