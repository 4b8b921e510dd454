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


def _check_result(sparsities: list[float], method: str, remedy: str = "lower the target or its strength") -> list[float]:
    bad = [(i, v) for i, v in enumerate(sparsities) if not 0.0 <= v < 1.0]
    if bad:
        raise ValueError(f"{method} allocation gives layer sparsities outside [0, 1): {bad[:4]}; {remedy}")
    return sparsities


def weighted_mean(sparsities: Sequence[float], layer_params: Sequence[int] | None = None) -> float:
    """Overall sparsity of the decoder: per-layer sparsities weighted by the layers' parameter counts."""
    weights = layer_params or [1] * len(sparsities)
    return sum(s * w for s, w in zip(sparsities, weights, strict=True)) / sum(weights)


def over_all_weights(sparsities: Sequence[float], layer_params: Sequence[int], s: float, method: str) -> list[float]:
    """Layer sparsities whose parameter-weighted mean is the target `s`, so that it is met over all weights.

    Unchanged when every layer holds as many weights (the allocations' formulas then average to s
    exactly, and a rescaling could move a value by a rounding); otherwise (a mixture of experts whose
    first layers are dense, as DeepSeek's) each is scaled by s·ΣP / ΣP·S_l, which keeps their ratios.
    """
    if len(set(layer_params)) <= 1 or s == 0:
        return list(sparsities)
    factor = s * sum(layer_params) / sum(p * v for p, v in zip(layer_params, sparsities, strict=True))
    return _check_result([v * factor for v in sparsities], method, "lower the target or its strength")


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


def parse_nm(nm: str | None) -> tuple[int, int]:
    """'2:4' -> (2, 4); None -> (0, 0), unstructured."""
    if not nm:
        return 0, 0
    try:
        n, m = (int(v) for v in nm.split(":"))
    except ValueError:
        raise ValueError(f"nm {nm!r} is not N:M; accepted: e.g. '2:4' or '4:8'") from None
    return n, m


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


XMIN = ("mid", "peak")  # where the fitted tail starts (AlphaPruning's fix_fingers: xmin_mid, xmin_peak)
PEAK_BINS = 100  # AlphaPruning's histogram of the log10 eigenvalues


def hill_alpha(eigenvalues: Tensor, xmin: str = "mid") -> float:
    """Power-law exponent α of the tail of an eigenvalue spectrum, by the Hill estimator.

    With the eigenvalues sorted ascending λ_1 ≤ … ≤ λ_N and the tail starting at λ_i, n = N − i
    values: α = 1 + n / Σ_{j ≥ i} ln(λ_j / λ_i), the maximum-likelihood exponent of a density
    ∝ λ^−α above λ_i. `mid`: the median, i = ⌊N/2⌋ (0-based). `peak`: the candidate xmin near the
    density peak of the log10 eigenvalues whose fit is closest to the data (`peak_fit`). fp64.
    """
    if xmin not in XMIN:
        raise ValueError(f"xmin {xmin!r} is not supported; accepted: 'mid' (the tail starts at the median eigenvalue) or 'peak' (at the density peak)")
    values = eigenvalues.detach().double().flatten().sort().values
    if xmin == "peak":
        return peak_fit(values)[0]
    if values.numel() < 2 or not bool(torch.isfinite(values).all()) or float(values[values.numel() // 2]) <= 0:
        raise ValueError(f"the spectrum needs at least 2 finite eigenvalues with a positive median, got {values.numel()}")
    tail = values[values.numel() // 2 :]
    logs = (tail / tail[0]).log().sum()
    if float(logs) <= 0:
        raise ValueError("the spectrum's upper half is flat (all eigenvalues equal): no power-law tail to fit")
    return float(1 + tail.numel() / logs)


def esd_peak(values: Tensor, bins: int = PEAK_BINS) -> float:
    """Where the density of log10 λ peaks: the lower edge p of the fullest of `bins` equal bins over
    [log10 min, log10 max] (the last bin closed; the first of several equally full), as λ, not its log."""
    logs = values.double().log10()
    lo, hi = float(logs.min()), float(logs.max())
    index = ((logs - lo) * bins / (hi - lo)).floor().clamp(max=bins - 1).long()  # torch.histc's bin of each value
    peak = int(torch.bincount(index, minlength=bins).argmax())  # the first maximum
    return 10 ** (lo + (hi - lo) * peak / bins)


def peak_window(peak: float) -> tuple[float, float]:
    """The candidate xmin of `peak_fit`, as AlphaPruning (and WeightWatcher) compute them from the peak p:
    eigenvalues λ with log10(0.95·p) <= λ <= 1.5·p. The lower bound is a log10 compared with the
    eigenvalues themselves, as in the reference: it excludes nothing when p <= 1/0.95 (the bound is
    then <= 0), and otherwise only eigenvalues far below the peak (below 2 for p = 100)."""
    return math.log10(0.95 * peak), 1.5 * peak


def tail_fit(values: Tensor, i: int) -> tuple[float, float]:
    """(α, D) of the tail of sorted `values` from index i: the Hill α, and the Kolmogorov-Smirnov distance
    D = max_k |1 − (λ_{i+k} / λ_i)^(1−α) − k/n| between the fitted power law's CDF and the tail's (k = 0 … n−1)."""
    ratios = values[i:] / values[i]
    n = ratios.numel()
    alpha = 1 + n / float(ratios.log().sum())
    steps = torch.arange(n, dtype=torch.float64) / n
    return alpha, float((1 - ratios.pow(1 - alpha) - steps).abs().max())


def peak_candidates(values: Tensor, bins: int = PEAK_BINS) -> range:
    """Indices of the candidate xmin of sorted positive `values`: every λ_i but the largest inside the
    peak's window (`peak_window`), as the reference's loop visits them (it stops at the first λ_i above it)."""
    low, high = peak_window(esd_peak(values, bins))
    inner = values[:-1]
    return range(int((inner < low).sum()), int((inner <= high).sum()))


def peak_fit(values: Tensor, bins: int = PEAK_BINS) -> tuple[float, float, float]:
    """(α, xmin, D) of AlphaPruning's `xmin_peak` fit of sorted positive eigenvalues: of the candidate
    xmin (`peak_candidates`), the one whose tail fit (`tail_fit`) has the smallest KS distance D wins,
    the first of equal ones. A candidate whose tail is flat (all equal) has no fit (the reference
    divides by zero there); no candidate at all is refused (where the reference returns α = 0)."""
    if values.numel() < 2 or not bool(torch.isfinite(values).all()) or float(values[0]) <= 0:
        raise ValueError(f"xmin 'peak' needs at least 2 finite, positive eigenvalues; got {values.numel()} from {float(values[0]):.3g}")
    if float(values[-1]) == float(values[0]):
        raise ValueError("the spectrum is flat (all eigenvalues equal): no power-law tail to fit")
    best: tuple[float, float, float] | None = None
    largest = float(values[-1])
    for i in peak_candidates(values, bins):
        if float(values[i]) == largest:
            break  # the tail from here is flat
        alpha, distance = tail_fit(values, i)
        if best is None or distance < best[2]:
            best = (alpha, float(values[i]), distance)
    if best is None:
        low, high = peak_window(esd_peak(values, bins))
        raise ValueError(f"xmin 'peak' finds no candidate: no eigenvalue but the largest lies in the peak's window [{low:.4g}, {high:.4g}]")
    return best


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
    return _check_result(sparsities.tolist(), "AlphaPruning", "lower the target sparsity or epsilon (ε)")
