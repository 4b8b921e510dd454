"""Validation 3 as a Lightning callback: Spearman ρ between layer-summed LLMDcos and STS gold scores."""

from __future__ import annotations

import logging

import torch
from lightning.pytorch import LightningModule, Trainer

from lit_activation import io, plots
from lit_activation.callbacks.base import model_name, tensorboard
from lit_activation.callbacks.groups import GroupGramCallback
from lit_activation.similarity import layer_span
from lit_activation.sts import duplicate_items, layer_sum, per_layer_rho, spearman, tied_values, window_sweep

log = logging.getLogger(__name__)

PAPER_LAYERS = (20, 30)  # Table 3, for 32-layer models; scaled to the model's depth by default


class STSCorrelation(GroupGramCallback):
    """Per sentence pair the sum of LLMDcos over a layer range, correlated with the gold score.

    Args:
        layers: 0-indexed inclusive [first, last]; None scales the paper's 20-30 of 32 to the model.
        sweep_width: width of the sliding layer windows also reported (None: a third of the depth).
    """

    data_modes = ("sts",)
    outputs = ("sts.json", "sts.csv", "sts_layers.png")

    def __init__(self, layers: list[int] | None = None, sweep_width: int | None = None) -> None:
        self.layers, self.sweep_width = layers, sweep_width

    def check_layers(self, n_layers: int) -> None:
        layer_span(n_layers, self.layers, PAPER_LAYERS)

    @staticmethod
    def _warn_ties(datamodule, sums: torch.Tensor) -> None:
        """Spearman averages tied ranks; say so once when the data hold duplicate pairs or exact ties."""
        duplicates = duplicate_items([tuple(map(tuple, g.rows)) for g in datamodule.groups])
        ties = tied_values(sums)
        if duplicates or ties:
            log.warning(
                "STS data: %d duplicate pair(s) and %d pair(s) whose LLMDcos layer sum ties another exactly, "
                "of %d; tied values get their average rank (as scipy.stats.spearmanr)", duplicates, ties, sums.numel(),
            )

    def report(self, trainer: Trainer, pl_module: LightningModule, cos: torch.Tensor) -> None:
        pair_cos = cos[..., 0, 1]  # (pairs, layers)
        n_layers = pair_cos.shape[1]
        layers = layer_span(n_layers, self.layers, PAPER_LAYERS)
        sums = layer_sum(pair_cos, layers)
        rho, p = spearman(sums, self.gold)
        self._warn_ties(trainer.datamodule, sums)
        single = per_layer_rho(pair_cos, self.gold)
        width = self.sweep_width or max(1, n_layers // 3)
        sweep = window_sweep(pair_cos, self.gold, width)
        name, model = trainer.datamodule.dataset_names[0], model_name(pl_module)
        result = {
            "model": model, "dataset": name, "n_pairs": pair_cos.shape[0], "layers": [layers[0], layers[-1]],
            "spearman": rho, "p_value": p, "per_layer_spearman": single,
            # what ρ is computed from, so that anyone can recompute it: pair i's gold and layer sum
            "gold": self.gold.tolist(), "layer_sum": sums.tolist(),
            "window_width": width, "window_spearman": [{"first": a, "last": b, "spearman": r} for a, b, r in sweep],
        }
        io.write_json(self.out / "sts.json", result)
        io.write_csv(
            self.out / "sts.csv", ["pair", "gold", *[f"llmdcos_layer{i}" for i in range(n_layers)]],
            ([i, g, *row] for i, (g, row) in enumerate(zip(self.gold.tolist(), pair_cos.tolist(), strict=True))),
        )
        fig = plots.line_figure(
            list(range(n_layers)),
            {"single layer": single, f"window of {width} (x = first layer)": [r for _, _, r in sweep] + [float("nan")] * (width - 1)},
            "layer", "Spearman ρ with gold", f"{model} on {name} ({pair_cos.shape[0]} pairs)",
        )
        io.save_figure(self.out / "sts_layers.png", fig)
        writer = tensorboard(trainer)
        if writer is not None:
            writer.add_scalar(f"sts/{name}/spearman_layers_{layers[0]}_{layers[-1]}", rho)
            for layer, r in enumerate(single):
                writer.add_scalar(f"sts/{name}/spearman_per_layer", r, global_step=layer)
            writer.add_figure("sts_layers", fig, close=False)
            writer.flush()
        plots.close(fig)
        print(f"STS {name}: Spearman ρ = {rho:.3f} (p = {p:.2g}, n = {pair_cos.shape[0]}, layers {layers[0]}-{layers[-1]}); {self.out / 'sts.json'}")
