"""Independent reference computations: one sample at a time, plain autograd, no hooks, no batching."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_activation.models import linear_modules


def naive_scores(model, row_ids: torch.Tensor, target: str = "max_logit") -> dict[str, torch.Tensor]:
    """|w * w.grad| per module for ONE unpadded sequence (1-D ids), via loss.backward()."""
    modules = linear_modules(model)
    model.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    try:
        logits = model(input_ids=row_ids[None]).logits[0].float()
        if target == "max_logit":
            value = logits[-1, logits[-1].argmax()]
        elif target == "log_prob":
            value = F.log_softmax(logits[-1], -1)[logits[-1].argmax()]
        else:
            value = F.cross_entropy(logits[:-1], row_ids[1:])
        value.backward()
        return {n: (m.weight.float() * m.weight.grad.float()).abs().detach().clone() for n, m in modules.items()}
    finally:
        model.zero_grad(set_to_none=True)
        model.requires_grad_(False)
