"""Layer-wise sparsity allocation (docs/method.md §4): how much of each decoder layer to prune.

Every allocator returns one sparsity per layer whose parameter-weighted mean is the target `s`
(plain mean for equal-sized layers) and rejects results outside [0, 1). Pure Python/PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def _check_target(s: float) -> None:
    if not 0.0 <= s < 1.0:
        raise ValueError(f"Sparsity {s} is outside [0, 1): 0 keeps every weight, 0.5 prunes half")


def _check_result(sparsities: list[float], method: str) -> list[float]:
    bad = [(i, v) for i, v in enumerate(sparsities) if not 0.0 <= v < 1.0]
    if bad:
        raise ValueError(f"{method} allocation gives layer sparsities outside [0, 1): {bad[:4]}; lower the target or its strength")
    return sparsities


def weighted_mean(sparsities: Sequence[float], layer_params: Sequence[int] | None = None) -> float:
    """Overall sparsity of the decoder: per-layer sparsities weighted by the layers' parameter counts."""
    weights = layer_params or [1] * len(sparsities)
    return sum(s * w for s, w in zip(sparsities, weights, strict=True)) / sum(weights)


def uniform_sparsity(n_layers: int, s: float) -> list[float]:
    """The same sparsity in every layer (Wanda's default)."""
    _check_target(s)
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return [float(s)] * n_layers


def activation_sparsity(counts: Sequence[float], s: float, alpha: float = 2.0, beta: float = 0.2) -> list[float]:
    """The paper's Validation 1 allocation from activated-parameter counts N_i (layer i = 1..L).

    N'_i = sigmoid((N_i - mean N) / std N + α / i);  S_i = S + β·S·(1 − N'_i · L / Σ_j N'_j).
    More activated parameters → lower sparsity; α/i keeps the first layers from being spared.
    std is the population std; equal counts (std 0) leave only the α/i term.
    """
    _check_target(s)
    n = torch.tensor([float(c) for c in counts], dtype=torch.float64)
    if n.numel() < 1 or not torch.isfinite(n).all():
        raise ValueError(f"counts must be finite, one per layer; got {list(counts)[:5]}...")
    std = n.std(unbiased=False)
    z = (n - n.mean()) / std if std > 0 else torch.zeros_like(n)
    i = torch.arange(1, n.numel() + 1, dtype=torch.float64)
    n_prime = torch.sigmoid(z + alpha / i)
    layers = n.numel()
    sparsities = s + beta * s * (1 - n_prime * layers / n_prime.sum())
    return _check_result(sparsities.tolist(), "activation")


def outlier_ratio(scores: Tensor, m: float = 5.0) -> float:
    """OWL's layer outlier ratio: the fraction of a layer's Wanda scores above m × their mean."""
    scores = scores.float().flatten()
    return float((scores > m * scores.mean()).double().mean())


def owl_from_ratios(ratios: Sequence[float], s: float, lam: float = 0.08) -> list[float]:
    """OWL allocation from per-layer outlier ratios: min-max scaled to [0, 2λ], mean-centred;
    density = that + (1 − s), so layers with more outliers keep more weights."""
    _check_target(s)
    r = torch.tensor(list(ratios), dtype=torch.float64)
    spread = r.max() - r.min()
    scaled = (r - r.min()) / spread * 2 * lam if spread > 0 else torch.zeros_like(r)
    density = scaled - scaled.mean() + (1 - s)
    return _check_result((1 - density).tolist(), "OWL")


def owl_sparsity(layer_scores: Sequence[Tensor], s: float, m: float = 5.0, lam: float = 0.08) -> list[float]:
    """OWL (outlier-weighted layerwise) sparsities from each layer's Wanda scores (docs/method.md §4)."""
    return owl_from_ratios([outlier_ratio(x, m) for x in layer_scores], s, lam)


def check_nm(sparsity: float, n: int, m: int) -> None:
    """N:M pruning prunes exactly n of every m weights: the sparsity must be n/m."""
    if (n or m) and not 0 < n < m:  # 0:0 means unstructured
        raise ValueError(f"N:M needs 0 < n < m (e.g. 2:4), got {n}:{m}")
    if m and not math.isclose(sparsity, n / m):
        raise ValueError(f"N:M {n}:{m} prunes {n / m:.3f} of the weights, but sparsity {sparsity} was asked; set sparsity to {n / m}")


def check_nm_widths(m: int, widths: dict[str, int]) -> None:
    """N:M groups m consecutive inputs of a row: every pruned module's input width must divide by m."""
    bad = {name: w for name, w in widths.items() if w % m}
    if bad:
        name, width = next(iter(bad.items()))
        raise ValueError(f"N:M with m={m} needs input widths divisible by {m}; {name} takes {width} inputs ({len(bad)} of {len(widths)} modules do not divide)")


def hill_alpha(eigenvalues: Tensor, xmin: str = "mid") -> float:
    """Power-law exponent α of the tail of an eigenvalue spectrum, by the Hill estimator.

    With the eigenvalues sorted ascending λ_1 ≤ … ≤ λ_N and the tail starting at λ_i (`mid`: the
    median, i = ⌊N/2⌋, 0-based), n = N − i values: α = 1 + n / Σ_{j ≥ i} ln(λ_j / λ_i), the maximum-
    likelihood exponent of a density ∝ λ^−α above λ_i. Computed in fp64.
    """
    if xmin != "mid":
        raise ValueError(f"xmin {xmin!r} is not supported; accepted: 'mid' (the tail starts at the median eigenvalue)")
    values = eigenvalues.detach().double().flatten().sort().values
    if values.numel() < 2 or not bool(torch.isfinite(values).all()) or float(values[values.numel() // 2]) <= 0:
        raise ValueError(f"the spectrum needs at least 2 finite eigenvalues with a positive median, got {values.numel()}")
    tail = values[values.numel() // 2 :]
    logs = (tail / tail[0]).log().sum()
    if float(logs) <= 0:
        raise ValueError("the spectrum's upper half is flat (all eigenvalues equal): no power-law tail to fit")
    return float(1 + tail.numel() / logs)


def esd_alpha(weight: Tensor, xmin: str = "mid") -> float:
    """α of a weight's empirical spectral density: the eigenvalues of WᵀW, i.e. its squared
    singular values, in fp32 (as AlphaPruning computes them)."""
    return hill_alpha(torch.linalg.svdvals(weight.detach().float()).square(), xmin)


def alpha_sparsity(block_metrics: Sequence[float], layer_params: Sequence[int], s: float, epsilon: float = 0.3) -> list[float]:
    """AlphaPruning's layer sparsities from per-block heavy-tail metrics (sum of the blocks' α).

    r_l = 1 − ε + 2ε · (m_l − min m) / (max m − min m): a higher α (a less trained block) gets more
    sparsity; then S_l = r_l · s · Σ P / Σ P·r, so that the parameter-weighted mean is s. Equal
    metrics give s everywhere. Results outside [0, 1) are refused, as for the other allocations.
    """
    _check_target(s)
    if not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    m = torch.tensor([float(v) for v in block_metrics], dtype=torch.float64)
    params = torch.tensor([float(p) for p in layer_params], dtype=torch.float64)
    if m.numel() != params.numel() or m.numel() < 1 or not bool(torch.isfinite(m).all()):
        raise ValueError(f"need one finite metric per layer and one size per layer, got {m.numel()} and {params.numel()}")
    spread = m.max() - m.min()
    unit = (m - m.min()) / spread if spread > 0 else torch.full_like(m, 0.5)
    ratios = 1 - epsilon + 2 * epsilon * unit
    sparsities = ratios * s * params.sum() / (params * ratios).sum()
    return _check_result(sparsities.tolist(), "AlphaPruning")
