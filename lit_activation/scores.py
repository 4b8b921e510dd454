"""Taylor activation scores A(s, w) = |w · ∂D(s)/∂w|, per input, exact, in fp32 (SPEC.md §1).

One forward and one backward serve a whole batch. For a linear layer y = x Wᵀ the weight gradient
of sample s is G_s = Σ_t δ_{s,t} x_{s,t}ᵀ with δ = ∂D/∂y; samples never interact in a decoder, so
backpropagating Σ_s D(s) gives every δ_{s,t} of every sample at once. A forward hook keeps each
module's input x; a hook on its output receives δ during the backward, forms all G_s with one
einsum over positions, turns them into scores and hands them to a consumer right away. Scores can
therefore be reduced (summed, counted, dotted) module by module: at most one module's per-sample
scores exist at any time. Weights stay frozen (no .grad is ever allocated).

|·| is non-linear, so A can never come from a batch-summed gradient: that is why G_s is per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from lit_activation.models import linear_modules

TARGETS = ("max_logit", "log_prob", "loss")

# consumer(module_name, scores): scores has shape (batch, *weight.shape), float32.
ScoreConsumer = Callable[[str, Tensor], None]


def last_positions(attention_mask: Tensor) -> Tensor:
    """Index of each row's last real (non-pad) token; works for left and right padding."""
    length = attention_mask.shape[-1]
    return length - 1 - attention_mask.flip(-1).to(torch.int64).argmax(-1)


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only, so a left-padded row sees the positions it would alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


def target_values(logits: Tensor, input_ids: Tensor, attention_mask: Tensor, target: str) -> Tensor:
    """D(s) per row: the quantity whose gradient defines the score.

    `max_logit` (the paper): raw logit of the arg-max next token at the last real position; `logits`
    then holds only that position, shape (batch, 1, vocab). `log_prob`: its log-probability.
    `loss`: the mean next-token NLL over the row's real tokens; `logits` holds every position.
    """
    if target == "loss":
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
        nll = -logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        valid = (attention_mask[:, 1:] * attention_mask[:, :-1]).to(nll.dtype)
        return (nll * valid).sum(-1) / valid.sum(-1).clamp_min(1)
    last = logits[:, -1].float()
    token = last.detach().argmax(-1, keepdim=True)
    if target == "max_logit":
        return last.gather(-1, token).squeeze(-1)
    if target == "log_prob":
        return F.log_softmax(last, dim=-1).gather(-1, token).squeeze(-1)
    raise ValueError(f"Unknown target {target!r}; accepted: {list(TARGETS)}")


def per_sample_scores(module: nn.Module, x: Tensor, delta: Tensor) -> Tensor:
    """A for each sample: |W ⊙ G_s| in fp32, shaped like the weight. x: (B, T, in), δ: (B, T, out)."""
    x, delta = x.float(), delta.float()
    weight = module.weight.float()
    if isinstance(module, Conv1D):  # y = x W + b with W: (in, out)
        grad = torch.einsum("bti,bto->bio", x, delta)
    else:  # y = x Wᵀ + b with W: (out, in)
        grad = torch.einsum("bto,bti->boi", delta, x)
    return grad.mul_(weight).abs_()


@contextmanager
def _score_hooks(modules: dict[str, nn.Module], mask: Tensor, consumer: ScoreConsumer) -> Iterator[None]:
    """Hooks that turn each module's (input, output gradient) into per-sample scores for `consumer`."""

    batch = mask.shape[0]
    pads = ~mask.bool()[..., None]

    def backward_hook(name: str, module: nn.Module, x: Tensor) -> Callable:
        def hook(delta: Tensor) -> None:
            # Some models (OPT's MLP) flatten (batch, time) into one dim: restore it. Pads' inputs
            # are zeroed here, transiently: δ is already zero there, but 0·NaN would not be.
            x_s = x.reshape(batch, -1, x.shape[-1]).masked_fill(pads, 0)
            consumer(name, per_sample_scores(module, x_s, delta.reshape(batch, -1, delta.shape[-1])))

        return hook

    def forward_hook(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            # Keep a reference, not a copy: q/k/v (and gate/up) share one input tensor.
            if output.requires_grad:
                output.register_hook(backward_hook(name, module, args[0].detach()))

        return hook

    handles = [m.register_forward_hook(forward_hook(n)) for n, m in modules.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _only_last_position(model: nn.Module, last: Tensor) -> Iterator[None]:
    """Feed lm_head only each row's last real hidden state: D needs no other logits."""
    head = model.get_output_embeddings()
    rows = torch.arange(last.shape[0], device=last.device)

    def pre_hook(module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        return (hidden[rows, last.to(hidden.device)][:, None],) + args[1:]

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()


def stream_taylor_scores(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    consumer: ScoreConsumer,
    target: str = "max_logit",
    modules: dict[str, nn.Module] | None = None,
) -> Tensor:
    """Compute every scored module's per-sample scores and pass each to `consumer` as it appears.

    Returns D(s) per row (detached). Modules arrive in backward order (deep layers first).
    """
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; accepted: {list(TARGETS)}")
    if attention_mask.sum(-1).min() < 1:
        raise ValueError("A row of the batch has no real token (attention_mask all zero)")
    modules = linear_modules(model) if modules is None else modules
    with torch.enable_grad():
        # Weights are frozen; making the embeddings require grad gives every module output a grad.
        embeds = model.get_input_embeddings()(input_ids).detach().requires_grad_(True)
        last = last_positions(attention_mask)
        head = _only_last_position(model, last) if target != "loss" else nullcontext()
        with _score_hooks(modules, attention_mask, consumer), head:
            logits = model(
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask),
                use_cache=False,
            ).logits
            values = target_values(logits, input_ids, attention_mask, target)
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
    target: str = "max_logit",
) -> dict[str, Tensor]:
    """A(s, w) for every scored module: name -> float32 tensor of shape (batch, *weight.shape).

    Holds every module's scores at once (batch × parameters × 4 bytes): for large models, use
    `stream_taylor_scores` with a reducing consumer instead.
    """
    modules = linear_modules(model)
    out: dict[str, Tensor] = {}
    stream_taylor_scores(model, input_ids, attention_mask, out.__setitem__, target, modules)
    return {name: out[name] for name in modules}  # layer order, not backward order
