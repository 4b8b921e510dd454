"""Document-level Validation 3 as a Lightning callback: LLMDcos of every two texts of a set, per
layer, beside the hidden-state and TF-IDF baselines, and Spearman ρ against human ratings."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer

from lit_activation import outputs, plots
from lit_activation.analyses import baselines
from lit_activation.analyses.baselines import off_diagonal_mean, rated_values, symmetric, tfidf_cosines
from lit_activation.analyses.similarity import layer_span
from lit_activation.analyses.sts import layer_sum, per_layer_rho, spearman
from lit_activation.callbacks.base import log_results, model_name
from lit_activation.callbacks.groups import GroupGramCallback
from lit_activation.callbacks.sts import PAPER_LAYERS

BASELINES = {"hidden": baselines.HIDDEN, "tfidf": f"{baselines.TFIDF} fitted on the set's N texts"}


class AllPairsSimilarity(GroupGramCallback):
    """Per layer, the N × N LLMDcos of a set's texts (data mode `set`: one group of N rows).

    Every text is scored once; the Gram over the set is streamed like any group's, so memory holds
    N × N numbers per layer (twice: LLMDcos and hidden states) beside one score tile. The baselines
    come from the same run: mean-pooled decoder-block outputs (hooks on the scoring forward) and
    TF-IDF. With human ratings (a shipped rated set such as `lee`, or `data.similarity`), ρ per
    layer and over `layers` (layer sum) for LLMDcos and hidden states, and ρ of TF-IDF.

    Limit: the N texts are ONE forward/backward batch (N × max_length tokens of activations;
    `lit-activation plan` says whether it fits). Scores are never stored, so two texts can only be
    compared inside one batch: splitting the set into blocks would give no pair across blocks.
    Beyond the limit, shorten or drop texts, set model.engine.checkpoint_blocks, or use a larger device.
    One target D per run: each needs its own backward, the whole scoring cost (STSCorrelation).

    Writes allpairs.json (matrices [layer][i][j], ρ and the values it is computed from),
    allpairs_layers.png (ρ per layer, or without ratings the mean cosine per layer) and
    allpairs_heatmap.png (mean LLMDcos over `layers`).

    Args:
        layers: 0-indexed inclusive [first, last]: the heatmap's mean and the headline layer sum;
            None scales the paper's 20-30 of 32 to the model.
    """

    data_modes = ("set",)
    outputs = ("allpairs.json", "allpairs_layers.png", "allpairs_heatmap.png")
    hidden_baseline = True

    def __init__(self, layers: list[int] | None = None) -> None:
        self.layers = layers

    def check_layers(self, n_layers: int) -> None:
        layer_span(n_layers, self.layers, PAPER_LAYERS)

    def correlations(self, llmdcos: torch.Tensor, hidden: torch.Tensor, tfidf: torch.Tensor, pairs: list, layers: list[int]) -> dict:
        """ρ (and p) against the rated pairs: per layer, over `layers` (sum) and of TF-IDF."""
        gold = torch.tensor([p[2] for p in pairs], dtype=torch.float64)
        at_pairs, hidden_at = rated_values(llmdcos, pairs), rated_values(hidden, pairs)  # (pairs, layers)
        sums, hidden_sums, tfidf_at = layer_sum(at_pairs, layers), layer_sum(hidden_at, layers), rated_values(tfidf, pairs)
        (rho, p), (hidden_rho, hidden_p), (tfidf_rho, tfidf_p) = spearman(sums, gold), spearman(hidden_sums, gold), spearman(tfidf_at, gold)
        return {
            "n_pairs": len(pairs), "ratings": [list(p) for p in pairs],
            "spearman": rho, "p_value": p, "per_layer_spearman": per_layer_rho(at_pairs, gold),
            "hidden_spearman": hidden_rho, "hidden_p_value": hidden_p, "hidden_per_layer_spearman": per_layer_rho(hidden_at, gold),
            "tfidf_spearman": tfidf_rho, "tfidf_p_value": tfidf_p,
            # what ρ is computed from, per rated pair (the matrices hold every value)
            "layer_sum": sums.tolist(), "hidden_layer_sum": hidden_sums.tolist(),
        }

    def report(self, trainer: Trainer, pl_module: LightningModule, cos: torch.Tensor) -> None:
        dm = trainer.datamodule
        # (layers, N, N): the set is one group. Made exactly symmetric: bmm rounds its (i, j) and
        # (j, i) entries differently in fp32, ~1e-7 apart
        llmdcos, hidden = symmetric(cos[0]), symmetric(self.hidden_cos[0])
        tfidf = tfidf_cosines(dm.groups[0].texts)
        n_layers, n = llmdcos.shape[0], llmdcos.shape[-1]
        layers = layer_span(n_layers, self.layers, PAPER_LAYERS)
        mean = llmdcos[layers].mean(0)
        name, model = dm.dataset_names[0], model_name(pl_module)
        result = {
            "model": model, "dataset": name, "n_texts": n, "n_layers": n_layers, "layers": [layers[0], layers[-1]],
            "baselines": BASELINES,
            "llmdcos": llmdcos.tolist(), "hidden": hidden.tolist(), "tfidf": tfidf.tolist(),  # [layer][i][j]; TF-IDF [i][j]
            "llmdcos_mean": mean.tolist(),  # over `layers`: the heatmap
        }
        ratings = dm.ratings
        if ratings is not None:
            result |= self.correlations(llmdcos, hidden, tfidf, ratings, layers)
            series = {"LLMDcos": result["per_layer_spearman"], "hidden states": result["hidden_per_layer_spearman"]}
            line, line_label, ylabel = result["tfidf_spearman"], "TF-IDF", "Spearman ρ with human ratings"
            title = f"{model} on {name} ({n} texts, {len(ratings)} rated pairs)"
        else:  # no ratings: how similar the texts look to each measure, layer by layer
            series = {"LLMDcos": off_diagonal_mean(llmdcos).tolist(), "hidden states": off_diagonal_mean(hidden).tolist()}
            line, line_label, ylabel = float(off_diagonal_mean(tfidf)), "TF-IDF", "mean cosine over pairs"
            title = f"{model} on {name} ({n} texts, no ratings)"
        outputs.write_json(self.out / "allpairs.json", result)
        fig = plots.line_figure(list(range(n_layers)), series, "layer", ylabel, title)
        fig.axes[0].axhline(line, color="gray", linestyle="--", label=f"{line_label} ({line:.3f})")
        fig.axes[0].legend()
        heat = plots.heatmap_figure(mean.tolist(), f"{model} on {name}: mean LLMDcos, layers {layers[0]}-{layers[-1]}")
        outputs.save_figure(self.out / "allpairs_layers.png", fig)
        outputs.save_figure(self.out / "allpairs_heatmap.png", heat)
        span = f"layers_{layers[0]}_{layers[-1]}"
        scalars = {
            f"allpairs/{name}/spearman_{span}": result["spearman"], f"allpairs/{name}/hidden_spearman_{span}": result["hidden_spearman"],
            f"allpairs/{name}/tfidf_spearman": result["tfidf_spearman"],
        } if ratings is not None else {}
        log_results(
            trainer, scalars, per_layer={f"allpairs/{name}/{label.replace(' ', '_')}_per_layer": values for label, values in series.items()},
            figures={"allpairs_layers": fig, "allpairs_heatmap": heat},
        )
        plots.close(fig)
        plots.close(heat)
        summary = (
            f"ρ = {result['spearman']:.3f} (p = {result['p_value']:.2g}, {len(ratings)} rated pairs, layers {layers[0]}-{layers[-1]}); "
            f"hidden states {result['hidden_spearman']:.3f}, TF-IDF {result['tfidf_spearman']:.3f}"
            if ratings is not None else "no human ratings"
        )
        print(f"All pairs {name} ({n} texts): {summary}; {self.out / 'allpairs.json'}")
