"""D(s), the quantity whose gradient defines the Taylor score (docs/method.md §1).

- `max_logit` (the paper): the raw logit of the arg-max next token at the row's last real position.
- `log_prob`: that token's log-probability.
- `loss`: the row's mean next-token NLL over its real tokens.

The output head only ever sees what D needs: the last real position for the first two; for `loss`,
the positions in chunks, each recomputed in the backward (checkpointed), so that fp32 logits of
every position (262k vocab × tokens × 4 bytes) never exist at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lit_activation.engine.tiling import row_tiles, tile_rows
from lit_activation.models.layers import text_config

TARGETS = ("max_logit", "log_prob", "loss")


def check_target(target: str) -> str:
    """The target name, or a clear error listing the accepted ones."""
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; accepted: {list(TARGETS)}")
    return target


def last_positions(attention_mask: Tensor) -> Tensor:
    """Index of each row's last real (non-pad) token; works for left and right padding."""
    length = attention_mask.shape[-1]
    return length - 1 - attention_mask.flip(-1).to(torch.int64).argmax(-1)


def last_token_target(last_logits: Tensor, target: str) -> Tensor:
    """D per row from the logits at the last real position, (batch, vocab)."""
    last = last_logits.float()
    token = last.detach().argmax(-1, keepdim=True)
    if target == "max_logit":
        return last.gather(-1, token).squeeze(-1)
    return F.log_softmax(last, dim=-1).gather(-1, token).squeeze(-1)


def softcap_of(model: nn.Module) -> float | None:
    """The config's final-logit soft cap (Gemma 2), applied to the logits as the model would."""
    return getattr(text_config(model.config), "final_logit_softcapping", None)


def chunked_token_nll(
    head: nn.Module, hidden: Tensor, input_ids: Tensor, mask: Tensor | None, chunk_bytes: float, softcap: float | None = None
) -> tuple[Tensor, Tensor]:
    """Per row, (sum of next-token NLLs, number of them), the head applied a chunk of positions at a time.

    hidden: (batch, time, width), the final hidden states. Position t predicts token t+1 where both
    are real (mask None: every token is). With gradients on, each chunk's logits are recomputed in
    the backward instead of kept.
    """
    batch, time = input_ids.shape
    if mask is None:  # static shapes, so the memory planner can run it on fake tensors
        rows = torch.arange(batch, device=input_ids.device).repeat_interleave(time - 1)
        states, targets = hidden[:, :-1].reshape(-1, hidden.shape[-1]), input_ids[:, 1:].reshape(-1)
        counts = torch.full((batch,), time - 1, device=input_ids.device)
    else:
        valid = (mask[:, 1:] * mask[:, :-1]).bool()
        rows, steps = valid.nonzero(as_tuple=True)
        states, targets, counts = hidden[rows, steps], input_ids[rows, steps + 1], valid.sum(-1)

    def nll(h: Tensor, t: Tensor) -> Tensor:
        logits = head.forward(h).float()  # forward, not __call__: past the head's hooks, through compute_precision's patch
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        return -F.log_softmax(logits, dim=-1).gather(-1, t[:, None]).squeeze(-1)

    vocab = head.weight.shape[0 if isinstance(head, nn.Linear) else 1]
    per_chunk = tile_rows(chunk_bytes, 4 * vocab)
    keep = torch.is_grad_enabled()
    chunks = [
        checkpoint(nll, states[c], targets[c], use_reentrant=False) if keep else nll(states[c], targets[c])
        for c in row_tiles(rows.numel(), per_chunk)
    ]
    losses = torch.cat(chunks) if chunks else states.new_zeros(0)
    return losses.new_zeros(batch).index_add(0, rows, losses), counts


def chunked_mean_nll(
    head: nn.Module, hidden: Tensor, input_ids: Tensor, mask: Tensor, chunk_bytes: float, softcap: float | None = None
) -> Tensor:
    """Per row, the mean NLL of its real next tokens (the `loss` target), in chunks of positions."""
    totals, counts = chunked_token_nll(head, hidden, input_ids, mask, chunk_bytes, softcap)
    return totals / counts.clamp_min(1).to(totals.dtype)


@torch.no_grad()
def sequence_nll(model: nn.Module, input_ids: Tensor, chunk_bytes: float) -> tuple[Tensor, Tensor]:
    """Per row of unpadded sequences, (sum of next-token NLLs, their number), for perplexity.

    The NLLs are formed inside the forward, where the head sees the final hidden states: a chunk
    of positions at a time, so fp32 logits of a whole batch never exist, and while a sharded
    (FSDP2) head is gathered. The head itself then gets one position, whose logits go unused.
    """
    head = model.get_output_embeddings()
    softcap = softcap_of(model)
    result: list[tuple[Tensor, Tensor]] = []

    def pre_hook(module: nn.Module, args: tuple) -> tuple:
        result.append(chunked_token_nll(module, args[0], input_ids, None, chunk_bytes, softcap))
        return (args[0][:, :1],) + args[1:]

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        model(input_ids=input_ids, use_cache=False)
    finally:
        handle.remove()
    return result[0]


@contextmanager
def head_input(model: nn.Module, attention_mask: Tensor, target: str, captured: list[Tensor]) -> Iterator[None]:
    """Feed lm_head only what D needs; for `loss`, keep its full input in `captured` instead.

    For `max_logit`/`log_prob` the head (and any soft cap after it) sees each row's last real hidden
    state. For `loss` it sees one position, a stand-in whose logits go unused: the loss is formed
    from `captured[0]` by `chunked_mean_nll`.
    """
    head = model.get_output_embeddings()
    last = last_positions(attention_mask)
    rows = torch.arange(last.shape[0], device=last.device)

    def pre_hook(module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        if target == "loss":
            captured.append(hidden)
            return (hidden[:, :1],) + args[1:]
        return (hidden[rows, last.to(hidden.device)][:, None],) + args[1:]

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()
