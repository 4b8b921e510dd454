"""Validation 3 as a Lightning callback: Spearman ρ between layer-summed LLMDcos and STS gold scores,
beside two baselines measured in the same run: mean-pooled hidden states and TF-IDF."""

from __future__ import annotations

import logging

import torch
from lightning.pytorch import LightningModule, Trainer

from lit_activation import outputs, plots
from lit_activation.analyses import baselines
from lit_activation.analyses.baselines import tfidf_pair_cosines
from lit_activation.analyses.similarity import layer_span
from lit_activation.analyses.sts import MIN_PAIRS, duplicate_items, layer_sum, per_layer_rho, spearman, tied_values, window_sweep
from lit_activation.callbacks.base import log_results, model_name
from lit_activation.callbacks.groups import GroupGramCallback

log = logging.getLogger(__name__)

PAPER_LAYERS = (20, 30)  # Table 3, for 32-layer models; scaled to the model's depth by default

BASELINES = {"hidden": baselines.HIDDEN, "tfidf": f"{baselines.TFIDF} fitted on the run's 2 × n_pairs sentences"}


class STSCorrelation(GroupGramCallback):
    """Per sentence pair the sum of LLMDcos over a layer range, correlated with the gold score.

    Two baselines come from the same run (lit_activation.analyses.baselines): the cosine of the pair's
    mean-pooled decoder-block outputs per layer, taken by hooks on the scoring forward (no extra
    pass, a few numbers per pair), and the TF-IDF cosine of the two sentences.

    The target D (`model.target`: max_logit, log_prob, loss) changes LLMDcos. One run reports one
    target: each target needs its own backward, and the backward with its per-sample score tiles is
    the whole scoring cost; only the forward (and the baselines, which do not depend on D) could be
    shared. Run one job per target, e.g. `--model.target log_prob`.

    sts.json: ρ/p of the layer sum (`spearman`, `p_value`), ρ per layer and per layer window, the
    values ρ comes from (`gold`, `layer_sum`); the same for hidden states (`hidden_spearman`,
    `hidden_p_value`, `hidden_per_layer_spearman`, `hidden_layer_sum`) and TF-IDF
    (`tfidf_spearman`, `tfidf_p_value`, `tfidf`). sts.csv: per pair, every layer's LLMDcos and
    hidden-state cosine, and TF-IDF.

    Args:
        layers: 0-indexed inclusive [first, last]; None scales the paper's 20-30 of 32 to the model.
        sweep_width: width of the sliding layer windows also reported (None: a third of the depth).
    """

    data_modes = ("sts",)
    outputs = ("sts.json", "sts.csv", "sts_layers.png")
    hidden_baseline = True

    def __init__(self, layers: list[int] | None = None, sweep_width: int | None = None) -> None:
        if sweep_width is not None and sweep_width < 1:
            raise ValueError(f"sweep_width must be >= 1 layer (or null: a third of the depth), got {sweep_width}")
        self.layers, self.sweep_width = layers, sweep_width

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Before the weights load: a Spearman ρ (and its p-value) needs at least 3 sentence pairs."""
        super().setup(trainer, pl_module, stage)
        pairs = trainer.datamodule.hparams.num_samples
        if pairs < MIN_PAIRS:
            raise ValueError(f"STSCorrelation needs at least {MIN_PAIRS} sentence pairs for a Spearman ρ; data.init_args.num_samples is {pairs}")

    def check_layers(self, n_layers: int) -> None:
        layer_span(n_layers, self.layers, PAPER_LAYERS)
        if self.sweep_width is not None and self.sweep_width > n_layers:
            raise ValueError(f"sweep_width {self.sweep_width} is wider than the model's {n_layers} layers; accepted: 1..{n_layers}")

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
        hidden = self.hidden_cos[..., 0, 1]
        groups = trainer.datamodule.groups
        tfidf = tfidf_pair_cosines([g.texts[0] for g in groups], [g.texts[1] for g in groups])
        n_layers = pair_cos.shape[1]
        layers = layer_span(n_layers, self.layers, PAPER_LAYERS)
        sums, hidden_sums = layer_sum(pair_cos, layers), layer_sum(hidden, layers)
        rho, p = spearman(sums, self.gold)
        hidden_rho, hidden_p = spearman(hidden_sums, self.gold)
        tfidf_rho, tfidf_p = spearman(tfidf, self.gold)
        self._warn_ties(trainer.datamodule, sums)
        single, hidden_single = per_layer_rho(pair_cos, self.gold), per_layer_rho(hidden, self.gold)
        width = self.sweep_width or max(1, n_layers // 3)
        sweep = window_sweep(pair_cos, self.gold, width)
        name, model = trainer.datamodule.dataset_names[0], model_name(pl_module)
        result = {
            "model": model, "dataset": name, "n_pairs": pair_cos.shape[0], "layers": [layers[0], layers[-1]],
            "spearman": rho, "p_value": p, "per_layer_spearman": single,
            # what ρ is computed from, so that anyone can recompute it: pair i's gold and layer sum
            "gold": self.gold.tolist(), "layer_sum": sums.tolist(),
            "window_width": width, "window_spearman": [{"first": a, "last": b, "spearman": r} for a, b, r in sweep],
            # baselines from the same run (per layer per pair: sts.csv, columns hidden_layer<l>)
            "baselines": BASELINES,
            "hidden_spearman": hidden_rho, "hidden_p_value": hidden_p, "hidden_per_layer_spearman": hidden_single,
            "hidden_layer_sum": hidden_sums.tolist(),
            "tfidf_spearman": tfidf_rho, "tfidf_p_value": tfidf_p, "tfidf": tfidf.tolist(),
        }
        outputs.write_json(self.out / "sts.json", result)
        outputs.write_csv(
            self.out / "sts.csv",
            ["pair", "gold", *[f"llmdcos_layer{i}" for i in range(n_layers)], *[f"hidden_layer{i}" for i in range(n_layers)], "tfidf"],
            (
                [i, g, *row, *h, t]
                for i, (g, row, h, t) in enumerate(zip(self.gold.tolist(), pair_cos.tolist(), hidden.tolist(), tfidf.tolist(), strict=True))
            ),
        )
        fig = plots.line_figure(
            list(range(n_layers)),
            {
                "LLMDcos, single layer": single,
                f"LLMDcos, window of {width} (x = first layer)": [r for _, _, r in sweep] + [float("nan")] * (width - 1),
                "hidden states, single layer": hidden_single,
            },
            "layer", "Spearman ρ with gold", f"{model} on {name} ({pair_cos.shape[0]} pairs)",
        )
        fig.axes[0].axhline(tfidf_rho, color="gray", linestyle="--", label=f"TF-IDF ({tfidf_rho:.3f})")
        fig.axes[0].legend()
        outputs.save_figure(self.out / "sts_layers.png", fig)
        span = f"layers_{layers[0]}_{layers[-1]}"
        log_results(
            trainer,
            scalars={f"sts/{name}/spearman_{span}": rho, f"sts/{name}/hidden_spearman_{span}": hidden_rho, f"sts/{name}/tfidf_spearman": tfidf_rho},
            per_layer={f"sts/{name}/spearman_per_layer": single, f"sts/{name}/hidden_spearman_per_layer": hidden_single},
            figures={"sts_layers": fig},
        )
        plots.close(fig)
        print(
            f"STS {name}: Spearman ρ = {rho:.3f} (p = {p:.2g}, n = {pair_cos.shape[0]}, layers {layers[0]}-{layers[-1]}); "
            f"hidden states {hidden_rho:.3f}, TF-IDF {tfidf_rho:.3f}; {self.out / 'sts.json'}"
        )
