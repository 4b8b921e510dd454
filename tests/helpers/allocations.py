"""What a callback allocates, measured: every tensor storage created inside its own hooks and still alive.

`measure(callback)` wraps each Lightning hook and each score-stream hook of one callback instance so
that it runs under one `LiveBytes` tracker (torch's dispatch sees every real tensor the hook creates,
and a storage counts until its last reference goes, whenever that is). `.peak` is then the most
memory the callback's own work held at once: its state plus its largest transient.
"""

from __future__ import annotations

import functools

from lightning.pytorch import Callback

from lit_activation.planning.simulate import LiveBytes

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
