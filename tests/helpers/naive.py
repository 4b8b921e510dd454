"""Independent reference computations: one sample at a time, plain autograd, no hooks, no batching."""

from __future__ import annotations

import math
import re
import statistics

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lit_activation.models.layers import linear_modules


def naive_scores(model, row_ids: torch.Tensor, target: str = "max_logit") -> dict[str, torch.Tensor]:
    """|w * w.grad| per module for ONE unpadded sequence (1-D ids), via loss.backward()."""
    modules = linear_modules(model)
    model.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    try:
        logits = model(input_ids=row_ids[None]).logits[0].float()
        if target in ("max_logit", "log_prob"):
            # the arg-max token is chosen here independently of the code under test: both must pick
            # the same one, which rounding cannot change only if the top logit clearly leads
            top2 = logits[-1].detach().topk(2).values
            margin = float(top2[0] - top2[1])
            assert margin > 1e-3 * max(1.0, abs(float(top2[0]))), (
                f"top-1 and top-2 logits are within {margin:.2e}: the arg-max token (the scored target) is fragile"
            )
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


def naive_means(
    datasets: list[str], files: dict[str, str], datamodule_kwargs: dict, model_name: str = "tiny-llama", target: str = "max_logit"
) -> tuple[dict, dict[str, int], int]:
    """Per dataset, the mean A per parameter over the datamodule's samples, one naive backward each.

    Returns (dataset -> module -> mean, module -> layer index, number of layers) for `model_name`
    (a tiny model or a model directory), loaded in fp32.
    """
    from lit_activation.data.datamodule import ActivationDataModule
    from lit_activation.models.layers import decoder_layers, layer_index
    from lit_activation.models.loading import load_causal_lm

    model, _ = load_causal_lm(model_name)
    prefix, layers = decoder_layers(model)
    dm = ActivationDataModule(datasets, tokenizer=model_name, data_files=files, **datamodule_kwargs)
    dm.setup()
    means = {}
    for d, name in enumerate(dm.dataset_names):
        per = [naive_scores(model, torch.tensor(g.rows[0]), target) for g in dm.groups if g.datasets[0] == d]
        means[name] = {n: torch.stack([p[n] for p in per]).mean(0) for n in per[0]}
    layer_of = {n: layer_index(n, prefix) for n in means[datasets[0]]}
    return means, layer_of, len(layers)


def per_layer(means: dict[str, torch.Tensor], layer_of: dict[str, int], n_layers: int) -> list[torch.Tensor]:
    """Every parameter's value of each layer, the layer's modules concatenated."""
    return [torch.cat([m.flatten() for n, m in means.items() if layer_of[n] == layer]) for layer in range(n_layers)]


def paper_formula(counts, s, alpha=2.0, beta=0.2):
    """The paper's formula written out with the standard library, layer i = 1..L."""
    mean, std = statistics.fmean(counts), statistics.pstdev(counts)
    n_prime = [1 / (1 + math.exp(-((c - mean) / std + alpha / i))) for i, c in enumerate(counts, start=1)]
    total = sum(n_prime)
    return [s + beta * s * (1 - p * len(counts) / total) for p in n_prime]


def naive_tfidf(texts: list[str]) -> np.ndarray:
    """TF-IDF rows by the textbook formula, one word at a time (independent of the sparse code)."""
    docs = [re.findall(r"\b\w\w+\b", t.lower()) for t in texts]
    vocab = sorted({w for d in docs for w in d})
    n = len(docs)
    idf = {w: math.log((1 + n) / (1 + sum(w in d for d in docs))) + 1 for w in vocab}
    rows = []
    for d in docs:
        v = np.array([d.count(w) * idf[w] for w in vocab])
        norm = math.sqrt(sum(x * x for x in v))
        rows.append(v / norm if norm else v)
    return np.array(rows)


def naive_pooled(model, ids: torch.Tensor) -> np.ndarray:
    """(layers, width) fp64 mean over tokens of each decoder block's output for ONE unpadded row,
    from output_hidden_states: hidden_states[l + 1] is block l's output, except that the last one has
    the final norm applied, so the norm is swapped for the identity here (a Llama model)."""
    norm = model.model.norm
    model.model.norm = nn.Identity()
    try:
        with torch.no_grad():
            states = model(input_ids=ids[None], output_hidden_states=True).hidden_states
    finally:
        model.model.norm = norm
    return np.stack([s[0].double().numpy().mean(0) for s in states[1:]])
