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


def naive_sparsegpt(
    weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, nm: tuple[int, int] = (0, 0), mask_group: int = 128, percdamp: float = 0.01,
    gap: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT from the paper's equations, in fp64, one column at a time: (the pruned weight, its mask).

    weight (rows, columns); hessian: H = 2·Σ x xᵀ (columns, columns). Dead inputs (H_ii = 0) get
    H_ii = 1 and a zero weight column, then λ = percdamp · mean(diag H) joins the diagonal (as the
    reference). Visiting column j with F = {j, …} the columns still free, [H_F⁻¹] is the explicit
    inverse of H restricted to F (no Cholesky factor): the row's error e = (w_j − q_j) / [H_F⁻¹]_jj
    moves the free weights by −e · [H_F⁻¹]_{j,:} (OBS). Masks, from the weights as they are when a
    group starts: unstructured, per group of `mask_group` columns, the ⌊rows · columns · s⌋ lowest
    w_c² / [H_{F_c}⁻¹]_cc by a Python sort (ties to the lower row, then column); N:M, per row the n
    lowest of every m columns. gap > 0: assert that the last pruned and the first kept saliency of
    every selection are more than `gap` apart (relative), so no rounding could swap them.
    """
    w = weight.detach().double().clone()
    h = hessian.detach().double().clone()
    rows, columns = w.shape
    dead = [c for c in range(columns) if h[c, c] == 0]
    for c in dead:
        h[c, c] = 1.0
        w[:, c] = 0.0
    h += percdamp * float(h.diagonal().mean()) * torch.eye(columns, dtype=torch.float64)
    inverses = [torch.linalg.inv(h[j:, j:]) for j in range(columns)]  # [H_F⁻¹] for F = {j, ...}
    n, m = nm
    width = m or mask_group
    mask = torch.zeros(rows, columns, dtype=torch.bool)
    for j in range(columns):
        if j % width == 0:
            group = range(j, min(j + width, columns))
            saliency = {(r, c): float(w[r, c]) ** 2 / float(inverses[c][0, 0]) for r in range(rows) for c in group}
            if m:
                for r in range(rows):
                    order = sorted(group, key=lambda c, r=r: (saliency[(r, c)], c))
                    _clear_cut([saliency[(r, c)] for c in order], n, gap)
                    mask[r, order[:n]] = True
            else:
                order = sorted(saliency, key=lambda rc: (saliency[rc], rc))
                k = int(len(order) * sparsity)
                _clear_cut([saliency[rc] for rc in order], k, gap)
                for r, c in order[:k]:
                    mask[r, c] = True
        inverse = inverses[j]
        error = torch.where(mask[:, j], w[:, j], 0.0) / inverse[0, 0]
        w[:, j:] -= torch.outer(error, inverse[0, :])
        w[mask[:, j], j] = 0.0  # what the update leaves there, exactly
    return w, mask


def _clear_cut(ordered: list[float], k: int, gap: float) -> None:
    if gap and 0 < k < len(ordered):
        last, first = ordered[k - 1], ordered[k]
        assert first - last > gap * abs(first), f"saliencies {last!r} and {first!r} nearly tie at the cut"


def naive_alpha_peak(eigenvalues, bins: int = 100) -> float:
    """AlphaPruning's `xmin_peak` α written out with numpy's histogram and plain Python loops: the
    peak p is the lower edge of the fullest bin of log10 λ (np.argmax: the first of equal ones); every
    λ_i but the largest with log10(0.95·p) <= λ_i <= 1.5·p is a candidate xmin; the candidate whose
    Hill fit α = 1 + n / Σ ln(λ_j / λ_i) has the smallest max_k |1 − (λ_{i+k}/λ_i)^(1−α) − k/n| wins."""
    eigs = np.sort(np.asarray(eigenvalues, dtype=np.float64))
    counts, edges = np.histogram(np.log10(eigs), bins=bins)
    peak = 10 ** edges[int(np.argmax(counts))]
    low, high = math.log10(0.95 * peak), 1.5 * peak
    best = None
    for i, x in enumerate(eigs[:-1]):
        if x < low:
            continue
        if x > high:
            break
        tail = eigs[i:]
        n = len(tail)
        alpha = 1 + n / sum(math.log(t / x) for t in tail)
        distance = max(abs(1 - (t / x) ** (1 - alpha) - k / n) for k, t in enumerate(tail))
        if best is None or distance < best[1]:
            best = (alpha, distance)
    return best[0]


def input_sums(model, modules: dict, calibration: torch.Tensor, batch_size: int, of) -> dict:
    """Σ of(x) over the calibration batch, per module of `modules`: x (tokens, in) the module's inputs in
    fp64, from whole-model forwards (use_cache off) of `batch_size` rows at a time with forward hooks."""
    sums = dict.fromkeys(modules, 0.0)

    def hook(name):
        def fn(module, args, output):
            x = args[0].detach().double()
            sums[name] = sums[name] + of(x.reshape(-1, x.shape[-1]))

        return fn

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            for chunk in calibration.split(batch_size):
                model(input_ids=chunk, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return sums


def naive_unit_scores(
    model, row_ids: torch.Tensor, target: str = "max_logit", dtype: torch.dtype = torch.float64, row_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """|w · ∂D/∂w| for ONE sequence in a `dtype` copy of the model with its own eager forward (plain
    autograd, no hooks): per nn.Linear and router (its `weight`), and per expert of every fused 3D
    experts tensor, named `<module>.experts.<e>.<tensor>` (the slice of expert e).

    row_mask: the row as a padded batch feeds it (D at its last real token, positions counted over real
    tokens): the same input the engine sees, for the fp32 rounding that padding brings."""
    import copy

    twin = copy.deepcopy(model).to(dtype).eval()  # buffers too (rotary frequencies, as rounded in a bf16 model)
    twin.config._experts_implementation = "eager"  # transformers' own per-expert loop
    twin.requires_grad_(True)
    if row_mask is None:
        logits = twin(input_ids=row_ids[None]).logits[0]
        last = -1
    else:
        positions = (row_mask.long().cumsum(-1) - 1).clamp_min(0)
        logits = twin(input_ids=row_ids[None], attention_mask=row_mask[None], position_ids=positions[None]).logits[0]
        last = int(row_mask.nonzero().max())
    if target == "loss":
        value = F.cross_entropy(logits[:-1], row_ids[1:])
    else:
        top2 = logits[last].detach().topk(2).values
        assert float(top2[0] - top2[1]) > 1e-3 * max(1.0, abs(float(top2[0]))), "the arg-max token (the scored target) is fragile"
        value = logits[last, logits[last].argmax()] if target == "max_logit" else F.log_softmax(logits[last], -1)[logits[last].argmax()]
    value.backward()
    scores = {}
    for name, p in twin.named_parameters():
        if ".layers." not in name or p.dim() < 2 or name.endswith("_bias"):
            continue
        a = (p * p.grad).abs().detach() if p.grad is not None else torch.zeros_like(p)
        if p.dim() == 3:  # fused experts: (experts, ...) -> one entry per expert
            module, tensor = name.rsplit(".", 1)
            scores.update({f"{module}.{e}.{tensor}": a[e] for e in range(p.shape[0])})
        else:
            scores[name.removesuffix(".weight")] = a
    twin.requires_grad_(False)
    return scores
