"""What a callback allocates, measured: every tensor storage created inside its own hooks and still alive;
and what a scoring pass allocates, beside the planner's simulation of it (`scoring_peaks`).

`measure(callback)` wraps each Lightning hook and each score-stream hook of one callback instance so
that it runs under one `LiveBytes` tracker (torch's dispatch sees every real tensor the hook creates,
and a storage counts until its last reference goes, whenever that is). `.peak` is then the most
memory the callback's own work held at once: its state plus its largest transient.
"""

from __future__ import annotations

import functools

import torch
from lightning.pytorch import Callback

from lit_activation.engine.scores import scoring_pass
from lit_activation.engine.settings import EngineSettings
from lit_activation.models.layers import scored_modules
from lit_activation.planning.simulate import LiveBytes, scoring_peak

HOOKS = (
    "setup", "on_predict_start", "on_score_batch_start", "on_score_tile", "on_score_batch_end", "on_predict_epoch_end",
    "on_validation_start", "on_validation_end",
)


def measure(callback: Callback) -> LiveBytes:
    """Track the callback's allocations from now on; returns the tracker (read `.peak` after the run)."""
    tracker = LiveBytes(fake=False)
    for name in HOOKS:
        hook = getattr(callback, name, None)
        if hook is None:
            continue

        @functools.wraps(hook)
        def tracked(*args, _hook=hook, **kwargs):  # noqa: ANN002, ANN003, ANN202 - any hook's arguments
            with tracker:
                return _hook(*args, **kwargs)

        setattr(callback, name, tracked)
    return tracker


def scoring_peaks(model: torch.nn.Module, batch: int = 4, length: int = 48, tile_bytes: int = 2**14) -> tuple[int, int]:
    """(the peak of a real scoring pass of `model` on batch × length random ids, measured by LiveBytes;
    the planner's figure for the same pass, simulated on fake tensors from the model's config)."""
    ids = torch.randint(4, 100, (batch, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    tracker = LiveBytes([*model.parameters(), *model.buffers(), ids, mask], fake=False)
    with tracker:
        scoring_pass(model, ids, mask, lambda tile: None, scored_modules(model), EngineSettings(tile_mb=tile_bytes / 2**20), True)
    return tracker.peak, scoring_peak(model.config, torch.float32, EngineSettings(), batch, length, tile_bytes)
