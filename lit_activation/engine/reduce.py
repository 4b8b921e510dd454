"""Streaming reductions of score tiles: what the callbacks keep instead of score vectors.

Each reducer's `update(tile)` is (part of) a `ScoreConsumer`: it folds one tile of per-sample
scores into small or parameter-sized state and lets it go. Any NaN or inf stops the run at the
batch's end (`end()`), naming the module (hence layer) and the samples; the check reads no value
on the host per tile, so the device never waits for it mid-batch. Pure PyTorch; distributed
reduction is the caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from lit_activation.engine.scores import ScoreTile
from lit_activation.engine.settings import RowRanges


def per_parameter_state(
    modules: Mapping[str, nn.Module], rows: RowRanges | None, device: torch.device | str | None = None
) -> tuple[dict[str, int], dict[str, Tensor]]:
    """Zeroed fp32 state for the stored rows [start, stop) of each module (`rows`, default all) on
    `device` (default the weight's), and each module's first row: a sharded rank keeps its own rows."""
    offsets, sums = {}, {}
    for name, m in modules.items():
        first, last = (rows or {}).get(name, (0, m.weight.shape[0]))
        offsets[name] = first
        sums[name] = torch.zeros((last - first, *m.weight.shape[1:]), device=device or m.weight.device)
    return offsets, sums


class FiniteGuard:
    """Checks that reduced tiles hold no NaN/inf, with one host sync per batch instead of per tile.

    Each `note` keeps the (device) sum of a reduced tile of non-negative values: it is finite
    exactly when every value is. `check` looks at all of them at once and names the first bad
    module, its rows and the samples whose inputs or gradients there were not finite.
    """

    def __init__(self) -> None:
        self.totals: list[Tensor] = []
        self.tiles: list[tuple[str, slice, Tensor | None, Tensor | None]] = []

    def note(self, tile: ScoreTile, reduced: Tensor) -> None:
        self.totals.append(reduced.sum())
        self.tiles.append((tile.name, tile.rows, tile.finite_samples, tile.samples))

    def check(self, where: str, sample_ids: Sequence[int]) -> None:
        """Raise FloatingPointError if any noted tile was not finite; forget the noted tiles."""
        totals, tiles = self.totals, self.tiles
        self.totals, self.tiles = [], []
        if not totals:
            return
        finite = torch.isfinite(torch.stack(totals))
        if bool(finite.all()):
            return
        name, rows, finite_samples, samples = tiles[int((~finite).nonzero()[0])]
        if finite_samples is not None and not bool(finite_samples.all()):
            bad = (~finite_samples).nonzero().flatten()
            bad = (bad if samples is None else samples[bad]).tolist()  # an expert's tile holds some of the batch
            which = f"sample(s) {[sample_ids[i] if sample_ids else i for i in bad][:8]}"
        else:  # finite inputs and gradients: the products overflowed
            which = f"an overflow in the products of the batch's sample(s) {list(sample_ids)[:8]}"
        raise FloatingPointError(
            f"NaN/inf Taylor scores in {where}, module {name} (rows {rows.start}-{rows.stop - 1}), {which}; "
            "try compute_dtype float32 or check the inputs"
        )


class ScoreSum:
    """For one dataset at a time, the sum over samples of A per parameter, and the sample count.

    State: one fp32 value per scored parameter (of `rows`, default all), whatever the number of
    datasets: read `means()` when a dataset is done, then `reset()` for the next. Each batch is
    reduced on its own device first (Σ_s |G_s|, then × |W| once, by |W ⊙ G_s| = |W| ⊙ |G_s|), so
    only a tile of sums ever crosses to a `device="cpu"` state. Call `begin` before a batch and
    `end` after it (the NaN/inf check).
    """

    def __init__(self, modules: Mapping[str, nn.Module], device: torch.device | str | None = None, rows: RowRanges | None = None) -> None:
        self.offsets, self.sums = per_parameter_state(modules, rows, device)
        self.samples = 0
        self.where, self.sample_ids = "a batch", []
        self.guard = FiniteGuard()
        self._scratch: dict[torch.device, Tensor] = {}

    def begin(self, batch_size: int, where: str = "a batch", sample_ids: Sequence[int] = ()) -> None:
        """Start a batch of `batch_size` samples; `where`/`sample_ids` name them in errors."""
        self.samples += batch_size
        self.where, self.sample_ids = where, list(sample_ids)

    def _scratch_for(self, tile: ScoreTile) -> Tensor:
        """A (rows, cols) buffer on the tile's device, reused across tiles (no page faults)."""
        shape, device = tile.abs_weight.shape, tile.abs_weight.device
        scratch = self._scratch.get(device)
        if scratch is None or scratch.numel() < shape.numel():
            scratch = self._scratch[device] = torch.empty(shape.numel(), device=device)
        return scratch[: shape.numel()].view(shape)

    def update(self, tile: ScoreTile) -> None:
        total = tile.weighted_abs_sum(self._scratch_for(tile))  # |W| ⊙ Σ_s |G_s|
        self.guard.note(tile, total)
        state = self.sums[tile.name]
        offset = self.offsets[tile.name]
        state[tile.rows.start - offset : tile.rows.stop - offset] += total.to(state.device)

    def end(self) -> None:
        """The batch is done: raise if any of its scores was NaN/inf (one host sync)."""
        self.guard.check(self.where, self.sample_ids)

    def means(self) -> dict[str, Tensor]:
        """Mean A per parameter (docs/method.md §2: mean first, then threshold), in place: the sums
        become the means, so no second parameter-sized copy is made. `reset()` before reusing."""
        if self.samples == 0:
            raise ValueError("no samples were scored")
        return {name: s.div_(self.samples) for name, s in self.sums.items()}

    def reset(self) -> None:
        """Zero the state for the next dataset (the memory is reused, not reallocated)."""
        for s in self.sums.values():
            s.zero_()
        self.samples = 0


class LayerGram:
    """Per group of rows and per layer, the Gram matrix Σ_w A(r1, w)·A(r2, w) of the group's rows.

    Cosine, norm and dot product of any two rows of a group follow from it, over the layer's
    modules concatenated. State per batch: (groups, layers, rows, rows), fp64 (the sum of many
    tiles' partial products) on the batch's device: a few numbers per pair, never a score vector.
    """

    def __init__(self, layer_of: Mapping[str, int], n_layers: int) -> None:
        self.layer_of, self.n_layers = dict(layer_of), n_layers
        self.gram: Tensor | None = None
        self.where, self.sample_ids = "a batch", []
        self.guard = FiniteGuard()

    def begin(self, n_groups: int, group_size: int, device: torch.device | str, where: str = "a batch", sample_ids: Sequence[int] = ()) -> None:
        """Start a batch of n_groups × group_size rows (group g owns rows g*R … g*R+R-1)."""
        self.gram = torch.zeros((n_groups, self.n_layers, group_size, group_size), dtype=torch.float64, device=device)
        self.where, self.sample_ids = where, list(sample_ids)

    def update(self, tile: ScoreTile) -> None:
        groups, _, size, _ = self.gram.shape
        layer = self.layer_of[tile.name]
        if tile.samples is not None:  # an expert's tile: only the rows that routed tokens to it
            self._update_rows(tile, layer, size)
            return
        flat = tile.scores().reshape(groups, size, -1)
        product = torch.bmm(flat, flat.transpose(1, 2))
        self.guard.note(tile, product)
        self.gram[:, layer] += product.to(self.gram.device, torch.float64)

    def _update_rows(self, tile: ScoreTile, layer: int, size: int) -> None:
        """Add the products of the tile's rows (a subset of the batch) to the pairs of each group they
        make; every other row's scores are zero here and add nothing."""
        flat = tile.scores().reshape(tile.samples.numel(), -1)
        product = flat @ flat.t()
        self.guard.note(tile, product)
        group, row = tile.samples // size, tile.samples % size
        first, second = (group[:, None] == group[None, :]).nonzero(as_tuple=True)
        gram = self.gram[:, layer]
        index = (group[first].to(gram.device), row[first].to(gram.device), row[second].to(gram.device))
        gram.index_put_(index, product[first, second].to(gram.device, torch.float64), accumulate=True)

    def end(self) -> None:
        """The batch is done: raise if any of its scores was NaN/inf (one host sync)."""
        self.guard.check(self.where, self.sample_ids)


class GradientSquares:
    """Per parameter, Σ_s G_s² over the samples: the per-sample gradients' squared ℓ2 norm, the
    ingredient of gradient-based pruning metrics (GBLM). One fp32 value per scored parameter (of
    `rows`, default all, as ScoreSum)."""

    def __init__(self, modules: Mapping[str, nn.Module], rows: RowRanges | None = None) -> None:
        self.offsets, self.sums = per_parameter_state(modules, rows)
        self.where, self.sample_ids = "a batch", []
        self.guard = FiniteGuard()

    def begin(self, where: str = "a batch", sample_ids: Sequence[int] = ()) -> None:
        """Start a batch; `where`/`sample_ids` name its samples in errors."""
        self.where, self.sample_ids = where, list(sample_ids)

    def update(self, tile: ScoreTile) -> None:
        squares = tile.abs_grad.square().sum(0)
        self.guard.note(tile, squares)
        state, offset = self.sums[tile.name], self.offsets[tile.name]
        state[tile.rows.start - offset : tile.rows.stop - offset] += squares.to(state.device)

    def end(self) -> None:
        """The batch is done: raise if any of its gradients was NaN/inf (one host sync)."""
        self.guard.check(self.where, self.sample_ids)
