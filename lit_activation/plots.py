"""Figures of the paper, as matplotlib Figures (the caller saves or logs them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files and TensorBoard only; no display here or on clusters
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def counts_figure(counts: Mapping[str, Sequence[int]], gamma: float, model: str) -> Figure:
    """Fig. 1/2: x = layer, y = activated parameters (mean A > γ), one line per dataset."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in counts.items():
        ax.plot(range(len(values)), values, marker="o", markersize=3, label=name)
    ax.set(xlabel="layer", ylabel=f"parameters with mean A > {gamma:g}", title=model)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def box_figure(values: Mapping[str, Sequence[Sequence[float]]], model: str) -> Figure:
    """Fig. 3: per dataset pair, a box plot per layer of LLMDcos over the pairs (whis=1.5)."""
    n = len(values)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.6 * n), squeeze=False)
    for ax, (label, per_pair) in zip(axes[:, 0], values.items(), strict=True):
        by_layer = list(zip(*per_pair, strict=True))  # per_pair: pairs × layers
        ax.boxplot(by_layer, whis=1.5, positions=range(len(by_layer)), widths=0.6, showfliers=True)
        ax.set(ylabel="LLMDcos", title=f"{label} ({len(per_pair)} pairs)", ylim=(-0.02, 1.02))
        ax.tick_params(axis="x", labelsize=7)
    axes[-1, 0].set_xlabel(f"layer ({model})")
    fig.tight_layout()
    return fig


def heatmap_figure(matrix: Sequence[Sequence[float]], title: str, labels: Sequence[str] | None = None) -> Figure:
    """A square matrix of similarities in [0, 1] as an image: Fig. 6's dataset × dataset matrix (`labels`
    name the rows), or the N × N texts of a set (numbered). Values are printed while they stay legible."""
    n = len(matrix)
    size = (1.0 + 0.8 * n, 0.8 + 0.7 * n) if labels is not None else (min(12.0, 2.0 + 0.35 * n), min(10.0, 1.5 + 0.3 * n))
    fig, ax = plt.subplots(figsize=size)
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    if labels is not None:
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
    else:
        ax.set(xlabel="text", ylabel="text")
    if labels is not None or n <= 12:
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8 if labels is not None else 7)
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    return fig


def line_figure(x: Sequence[float], series: Mapping[str, Sequence[float]], xlabel: str, ylabel: str, title: str) -> Figure:
    """A simple line plot of several series over a shared x."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, y in series.items():
        ax.plot(x, y, marker="o", markersize=3, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    return fig


def experts_figure(token_share: Mapping[int, Sequence[Sequence[float | None]]], activated_share: Mapping[int, Sequence[Sequence[float | None]]],
                   datasets: Sequence[str], model: str) -> Figure:
    """Per MoE layer, side by side, expert × dataset maps of the share of the dataset's tokens each
    expert takes (routing) and of its activated parameters (what the parameters do). A dataset none
    of whose tokens reached an expert ("not routed") is hatched grey, apart from a routed zero."""
    import numpy as np

    layers = list(token_share)
    experts = len(next(iter(token_share.values()))[0]) if layers else 0
    height = max(1.2, 0.22 * experts + 0.6)
    fig, axes = plt.subplots(len(layers), 2, figsize=(2.0 + 1.2 * len(datasets), height * len(layers) + 0.6), squeeze=False)
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    for row, layer in enumerate(layers):
        for col, (label, shares) in enumerate((("token share", token_share[layer]), ("activated share", activated_share[layer]))):
            ax = axes[row, col]
            values = np.array([[np.nan if v is None else v for v in per_dataset] for per_dataset in shares], dtype=float).T  # experts × datasets
            routed = np.array([[v is not None and v > 0 for v in per_dataset] for per_dataset in token_share[layer]]).T
            if col == 1:
                values = np.where(routed, values, np.nan)  # not routed: no share to show
            image = ax.imshow(np.ma.masked_invalid(values), vmin=0.0, vmax=max(0.01, float(np.nanmax(values)) if np.isfinite(values).any() else 1.0),
                              cmap=cmap, aspect="auto")
            for e, d in zip(*np.nonzero(~routed), strict=True):
                ax.add_patch(plt.Rectangle((d - 0.5, e - 0.5), 1, 1, fill=False, hatch="///", edgecolor="grey", linewidth=0))
            ax.set_xticks(range(len(datasets)), datasets if row == len(layers) - 1 else [""] * len(datasets), rotation=45, ha="right", fontsize=7)
            ax.set_yticks(range(experts), [str(e) if experts <= 16 or e % 4 == 0 else "" for e in range(experts)], fontsize=6)
            ax.set_ylabel(f"layer {layer}\nexpert" if col == 0 else "")
            if row == 0:
                ax.set_title(label, fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"{model}: routing (left) and activated parameters (right) per expert; hatched: not routed", fontsize=9)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)
