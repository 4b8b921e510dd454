"""Taylor activation scores A(s, w) = |w · ∂D(s)/∂w|, per input, exact, in fp32 (docs/method.md §1).

One forward and one backward serve a whole batch: hooks keep each module's input x and receive δ
in the backward, and form the per-sample gradients G_s a few weight rows at a time, handed to the
consumers as tiles (A = |W| ⊙ |G_s|) and let go. Peak memory: the model, the reducers' state, one
tile and the batch's activations (docs/design.md, "Scores in one batched pass").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers.pytorch_utils import Conv1D

from lit_activation.engine.experts import ExpertsPass, Routed, RoutingRecord, routed_experts
from lit_activation.engine.kernels import check_fused, weighted_abs_sum
from lit_activation.engine.precision import compute_precision
from lit_activation.engine.products import IEEEProducts, pinned_matmul_precision, products_for, split_works_on
from lit_activation.engine.settings import EngineSettings, RowRanges
from lit_activation.engine.targets import chunked_mean_nll, head_input, last_token_target, softcap_of
from lit_activation.engine.tiling import budget_bytes, row_tiles, tile_rows
from lit_activation.models.experts import experts_modules
from lit_activation.models.layers import decoder_layers, scored_modules, stored_transposed, weight_shape


class ScoreTile:
    """Rows `rows` (of the weight as stored: (out, in), Conv1D (in, out)) of one module's scores.

    abs_grad: |G_s| of these rows per sample, (batch, rows, cols) fp32. abs_weight: |W| of these
    rows, (rows, cols) fp32. finite_samples: (batch,) bool, whether each sample's inputs and output
    gradients of this module are all finite (names the samples when a reducer finds NaN/inf).
    samples: None when the tile holds every sample of the batch; else (an expert's tile) the batch rows
    it holds, ascending: every other sample routed no token to that expert and scores exactly zero there.
    All are valid only during the consumer call.

    A tile of the fused engine (`EngineSettings.fused`) comes with the product's operands instead
    of abs_grad: `weighted_abs_sum` then runs one kernel that never forms the per-sample products,
    and abs_grad is formed only if a consumer reads it.
    """

    def __init__(
        self, name: str, rows: slice, abs_grad: Tensor | None, abs_weight: Tensor, finite_samples: Tensor | None = None,
        operands: GradientOperands | None = None, samples: Tensor | None = None,
    ) -> None:
        if abs_grad is None and operands is None:
            raise ValueError("a score tile needs abs_grad or the operands that form it")
        self.name, self.rows, self.abs_weight, self.finite_samples, self.samples = name, rows, abs_weight, finite_samples, samples
        self._abs_grad, self._operands, self._scores = abs_grad, operands, None

    @property
    def abs_grad(self) -> Tensor:
        if self._abs_grad is None:
            self._abs_grad = self._operands.form().abs_()
        return self._abs_grad

    def scores(self) -> Tensor:
        """A = |W| ⊙ |G_s| for these rows, (batch, rows, cols); formed once, on first use."""
        if self._scores is None:
            self._scores = self.abs_grad * self.abs_weight
        return self._scores

    def weighted_abs_sum(self, out: Tensor) -> Tensor:
        """|W| ⊙ Σ_s |G_s| of these rows into `out` (rows, cols): the batch's sum of A."""
        if self._abs_grad is None:  # a fused tile whose per-sample values nobody has read
            operands = self._operands
            return weighted_abs_sum(operands.left, operands.right, self.abs_weight, out, operands.positions)
        return torch.sum(self.abs_grad, 0, out=out).mul_(self.abs_weight)


@dataclass
class GradientOperands:
    """What forms one tile's per-sample gradients: G_s = left_s @ right_s (a sum over `positions`),
    by `products`, into `space`."""

    left: Tensor
    right: Tensor
    products: IEEEProducts
    space: Workspace
    positions: int

    def form(self) -> Tensor:
        batch, rows, cols = self.left.shape[0], self.left.shape[1], self.right.shape[-1]
        return self.products.gradient(self.left, self.right, self.space.view(batch, rows, cols), self.positions)


ScoreConsumer = Callable[[ScoreTile], None]


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only, so a left-padded row sees the positions it would alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


class Workspace:
    """One flat fp32 buffer reused by every tile of a batch (grown on demand, never shrunk).

    CPU allocators hand a large fresh block back zero-filled page by page; allocating each tile
    anew made that page-faulting a visible share of the scoring time.
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.buffer = device, torch.empty(0, device=device)

    def view(self, *shape: int) -> Tensor:
        n = 1
        for d in shape:
            n *= d
        if self.buffer.numel() < n:
            self.buffer = torch.empty(n, device=self.device)
        return self.buffer[:n].view(*shape)


def _tiles(
    name: str, module: object, x: Tensor, delta: Tensor, rows: tuple[int, int], budget: float, space: Workspace,
    products: IEEEProducts, finite: Tensor | None = None, fused: bool = False, samples: Tensor | None = None,
) -> Iterator[ScoreTile]:
    """The score tiles of one unit from its inputs x (B, T, in) and output gradients δ (B, T, out)
    (B: the batch, or the `samples` of it an expert's tokens come from)."""
    # G_s = δ_sᵀ x_s, (out, in); Conv1D stores the weight as (in, out), so there G_s = x_sᵀ δ_s.
    by_row, other = (x, delta) if stored_transposed(module) else (delta, x)
    by_row = by_row.transpose(1, 2).contiguous()  # (B, rows, T): a row tile is one contiguous block
    batch, positions, cols = by_row.shape[0], by_row.shape[-1], other.shape[-1]
    by_row, other = products.gradient_operands(by_row, other)
    weight = module.weight.detach()
    per_tile = tile_rows(budget, batch * cols * 4)
    for r in row_tiles(weight.shape[0], per_tile, *rows):
        operands = GradientOperands(by_row[:, r], other, products, space, positions)
        abs_grad = None if fused else operands.form().abs_()  # fused: formed only if a consumer reads it
        yield ScoreTile(name, r, abs_grad, weight[r].float().abs(), finite, operands, samples)


def finite_rows(*tensors: Tensor) -> Tensor:
    """(batch,) bool: whether each row (dim 0) of every tensor holds only finite values. No host sync.

    From one sum per row and tensor (a NaN or inf anywhere makes it non-finite): a reduction, not a
    full-size boolean copy, which cost a tenth of a CPU scoring pass. A row of finite values whose sum
    overflows also reads as non-finite; this only names samples once a NaN/inf score was found.
    """
    ok = None
    for t in tensors:
        row_ok = torch.isfinite(t.sum(dim=tuple(range(1, t.dim()))))
        ok = row_ok if ok is None else ok & row_ok
    return ok


class BlockRecompute:
    """Per decoder block, the forward runs inside torch's checkpoint and again in the backward.

    The backward then needs one block's activations at a time instead of every block's (about a
    third more compute: one more forward). `active` is true while a block is being recomputed: that
    is when the score hooks take the modules' inputs.
    """

    def __init__(self) -> None:
        self.active = False

    @contextmanager
    def around(self, blocks: nn.ModuleList) -> Iterator[None]:
        for block in blocks:
            block.forward = self._checkpointed(block.forward)
        try:
            yield
        finally:
            for block in blocks:
                del block.forward  # the class's forward again

    def _checkpointed(self, original: Callable) -> Callable:
        calls = [0]

        def run(*args: object, **kwargs: object) -> object:
            calls[0] += 1
            self.active = calls[0] % 2 == 0  # the 1st call is the forward, the 2nd its recomputation
            try:
                return original(*args, **kwargs)
            finally:
                self.active = False

        def forward(*args: object, **kwargs: object) -> object:
            # early_stop=False: recompute the whole block, so that every module's input comes back
            # (a module that saved nothing, e.g. a frozen last projection, would be skipped)
            return checkpoint(run, *args, use_reentrant=False, early_stop=False, **kwargs)

        return forward


class ScoreHooks:
    """Turn each scored unit's (input, output gradient) into score tiles for `consumer`.

    A unit is scored once both have arrived: its input x from the forward (from the block's
    recomputation when `recompute` is given, so no block keeps its inputs until the backward) and
    its output gradient δ from the backward, in either order. Linears and routers hand them over
    through forward hooks (`attached`); each expert's products through the routed forward
    (engine/experts.py), which calls `capture` with the samples its tokens come from.
    """

    def __init__(
        self, mask: Tensor, consumer: ScoreConsumer, budget: float, rows: RowRanges, padded: bool, products: IEEEProducts,
        recompute: BlockRecompute | None = None, fused: bool = False, wanted: set[str] | None = None,
    ) -> None:
        self.wanted = wanted  # the units to score (None: every one captured)
        self.batch, self.consumer, self.budget, self.rows, self.padded = mask.shape[0], consumer, budget, rows, padded
        self.products, self.recompute, self.fused = products, recompute, fused
        self.pads = ~mask.bool()[..., None]
        self.space = Workspace(mask.device)
        self.inputs: dict[str, tuple[Tensor, Routed | None]] = {}
        self.grads: dict[str, Tensor] = {}

    def capture(self, name: str, module: object, x: Tensor, output: Tensor, routed: Routed | None = None, keep: Tensor | None = None) -> None:
        """One unit's forward: its input `x` and `output`; `routed`: the layout of an expert's tokens,
        `keep`: the rows of `output` whose gradient is scored (x holds only those)."""
        if self.wanted is not None and name not in self.wanted:
            return
        recompute = self.recompute
        if recompute is not None and recompute.active:
            self.inputs[name] = (x.detach(), routed)
            self._score(name, module)
            return
        if not output.requires_grad:
            return
        if recompute is None:  # keep a reference, not a copy: q/k/v (and gate/up) share one input
            self.inputs[name] = (x.detach(), routed)

        def on_grad(delta: Tensor) -> None:
            self.grads[name] = delta if keep is None else delta[keep]
            self._score(name, module)

        output.register_hook(on_grad)

    def _score(self, name: str, module: object) -> None:
        if name not in self.inputs or name not in self.grads:
            return
        (x, routed), delta = self.inputs.pop(name), self.grads.pop(name)
        x = x.to(delta.dtype)  # a router may compute its logits in fp32 whatever the pass's dtype
        samples = None
        if routed is None:
            # Some models (OPT's MLP) flatten (batch, time) into one dim: restore it. Pads' inputs are
            # zeroed here, transiently: δ is already zero there, but 0·NaN would not be.
            x_s, delta_s = x.reshape(self.batch, -1, x.shape[-1]), delta.reshape(self.batch, -1, delta.shape[-1])
            if self.padded:
                x_s = x_s.masked_fill(self.pads, 0)
        else:  # an expert's routed tokens, laid out per sample (pads were never routed here)
            x_s, delta_s = routed.pad(x), routed.pad(delta)
            samples = None if routed.samples.numel() == self.batch else routed.samples
        span = self.rows.get(name, (0, weight_shape(module)[0]))
        finite = finite_rows(x_s, delta_s)
        for tile in _tiles(name, module, x_s, delta_s, span, self.budget, self.space, self.products, finite, self.fused, samples):
            self.consumer(tile)

    def _forward_hook(self, name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> None:
            if isinstance(output, tuple):  # a router: its logits x·Wᵀ come first
                output = output[0]
                if output.shape[-1] != module.weight.shape[0]:
                    raise ValueError(
                        f"{name} ({type(module).__name__}) returned {tuple(output.shape)} first, not the (tokens, {module.weight.shape[0]}) "
                        "router logits its weight gives: this router's layout is not one the engine knows"
                    )
            self.capture(name, module, args[0], output)

        return hook

    @contextmanager
    def attached(self, modules: Mapping[str, object]) -> Iterator[None]:
        """Forward hooks on every scored nn.Module (expert slices are captured by the routed forward)."""
        handles = [m.register_forward_hook(self._forward_hook(n)) for n, m in modules.items() if isinstance(m, nn.Module)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


@contextmanager
def _differentiable_embeddings(model: nn.Module, dtype: torch.dtype, captured: list[Tensor]) -> Iterator[None]:
    """Make the token embeddings a leaf that requires grad (in the compute dtype), so that every
    module output downstream gets a gradient while every weight stays frozen."""

    def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        leaf = output.detach().to(dtype).requires_grad_(True)
        captured.append(leaf)
        return leaf

    handle = model.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def stream_taylor_scores(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    consumer: ScoreConsumer,
    settings: EngineSettings = EngineSettings(),  # noqa: B008 - frozen: one shared default is safe
    modules: Mapping[str, object] | None = None,
    routing: Callable[[RoutingRecord], None] | None = None,
) -> Tensor:
    """Compute every scored unit's per-sample scores and pass them to `consumer`, tile by tile.

    settings: target, compute dtype, products, tile budget, rows, recomputation (EngineSettings).
    modules: the scored units (default: every linear of every decoder block, and in a mixture of
    experts every router and every expert's slice of the fused tensors: models.layers.scored_modules).
    routing: in a mixture of experts, called once per MoE block with the batch's routing (RoutingRecord).
    Returns D(s) per row (detached). Units arrive in backward order (deep layers first).
    """
    if attention_mask.sum(-1).min() < 1:
        raise ValueError("A row of the batch has no real token (attention_mask all zero)")
    padded = not bool(attention_mask.bool().all())
    modules = scored_modules(model) if modules is None else modules
    return scoring_pass(model, input_ids, attention_mask, consumer, modules, settings, padded, routing=routing)


def scoring_pass(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    consumer: ScoreConsumer,
    modules: Mapping[str, object],
    settings: EngineSettings,
    padded: bool,
    split: bool | None = None,
    routing: Callable[[RoutingRecord], None] | None = None,
) -> Tensor:
    """One forward and backward that streams score tiles: `stream_taylor_scores` without its input
    checks. Nothing here reads tensor values, so the memory planner can run it on fake tensors
    (`split` then says which products to simulate; default: the settings' choice for the device)."""
    budget = budget_bytes(settings.tile_mb, input_ids.device.type)
    if split is None:  # a device's first split pass checks the products against fp64 (products.py)
        split = settings.split_products(input_ids.device) and (not input_ids.is_cuda or split_works_on(input_ids.device))
    fused = settings.fused and check_fused(input_ids.device)
    fused_linear = settings.fused_linear and check_fused(input_ids.device, "fused_linear")
    settings.check_fused_linear(input_ids.device, split)
    linears = [m for m in model.modules() if isinstance(m, (nn.Linear, Conv1D))]
    products = products_for(split, all(m.weight.dtype == torch.bfloat16 for m in linears), fused_linear)
    embeds: list[Tensor] = []
    hidden: list[Tensor] = []
    recompute = BlockRecompute() if settings.checkpoint_blocks else None
    prefix, layers = decoder_layers(model)
    blocks = recompute.around(layers) if recompute else nullcontext()
    target = settings.target
    hooks = ScoreHooks(attention_mask, consumer, budget, settings.rows or {}, padded, products, recompute, fused, set(modules))
    experts = {f"{prefix}.{i}.{sub}": (m, layout, i) for i, block in enumerate(layers) for sub, (m, layout) in experts_modules(block).items()}
    run = ExpertsPass(products, int(budget), hooks.capture, attention_mask.bool().reshape(-1), attention_mask.shape[0], routing)
    with torch.enable_grad(), pinned_matmul_precision(), compute_precision(model, settings.dtype, products, int(budget)), blocks:
        with _differentiable_embeddings(model, settings.dtype, embeds), head_input(model, attention_mask, target, hidden):
            with hooks.attached(modules), routed_experts(experts, run):
                logits = model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids_from_mask(attention_mask),
                    use_cache=False,
                ).logits
                if target == "loss":
                    head = model.get_output_embeddings()
                    values = chunked_mean_nll(head, hidden[0], input_ids, attention_mask, budget, softcap_of(model))
                else:
                    values = last_token_target(logits[:, -1], target)
                if not values.requires_grad:
                    raise RuntimeError(
                        "Gradients are disabled, so every Taylor score would be zero. Under Lightning, "
                        "set Trainer(inference_mode=False) (the shipped configs do)."
                    )
                torch.autograd.grad(values.sum(), embeds)
    return values.detach()


def taylor_scores(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    settings: EngineSettings = EngineSettings(),  # noqa: B008 - frozen: one shared default is safe
) -> dict[str, Tensor]:
    """A(s, w) for every scored unit: name -> float32 tensor of shape (batch, *weight.shape).

    Holds every unit's scores at once (batch × parameters × 4 bytes): for large models, use
    `stream_taylor_scores` with a reducing consumer instead.
    """
    modules = scored_modules(model)
    batch = input_ids.shape[0]
    out = {name: torch.zeros((batch, *weight_shape(m)), device=input_ids.device) for name, m in modules.items()}

    def keep(tile: ScoreTile) -> None:
        rows = out[tile.name][:, tile.rows]
        if tile.samples is None:
            rows.copy_(tile.scores())
        else:  # an expert's tile: the samples that routed tokens to it (the others score zero there)
            rows[tile.samples] = tile.scores()

    stream_taylor_scores(model, input_ids, attention_mask, keep, settings, modules)
    return out
