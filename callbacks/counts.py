"""Finding 1 as a Lightning callback: activated-parameter counts per layer and module, per dataset."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch import LightningModule, Trainer

from lit_activation import counts as C
from lit_activation import io, plots
from lit_activation.callbacks.base import ScoreCallback, all_reduce_sum, model_name, run_dir, tensorboard
from lit_activation.models import decoder_layers, layer_index, module_kind
from lit_activation.reduce import ScoreSum

OUTPUTS = ("counts.json", "counts.csv", "counts.png")


class ActivationCounts(ScoreCallback):
    """Sum of A per parameter and dataset over the epoch; at its end, counts of mean A > γ.

    Args:
        gamma: threshold γ on the mean score (paper's text: 2e-5 for 32 layers, 5e-6 for 40; its
            code: 2e-6). γ depends on model scale, hence the quantile thresholds too.
        quantiles: the pooled mean-A distribution's quantiles at which counts are also reported.
        bins: bins of the per-layer log10(mean A) histogram (also sets the quantile resolution).
        state_device: `model` keeps the fp32 sums beside the weights (fast); `cpu` saves
            accelerator memory (n_datasets × parameters × 4 bytes) at the cost of transfers.
    """

    def __init__(
        self,
        gamma: float = 2e-5,
        quantiles: list[float] = [0.5, 0.9, 0.99],  # noqa: B006 - jsonargparse needs a literal
        bins: int = 100,
        state_device: Literal["model", "cpu"] = "model",
    ) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma, self.quantiles, self.bins, self.state_device = gamma, list(quantiles), bins, state_device
        self.sums: ScoreSum | None = None
        self.results: dict | None = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.out = run_dir(trainer)  # a collective under DDP: resolve it on every rank, once
        if trainer.is_global_zero:
            io.check_new(self.out / f for f in OUTPUTS)
        names = trainer.datamodule.dataset_names
        device = "cpu" if self.state_device == "cpu" else None
        self.sums = ScoreSum(pl_module.model, len(names), device=device)

    def on_score_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor]) -> None:
        self.sums.begin(batch["dataset_index"])

    def on_module_scores(self, name: str, scores: torch.Tensor) -> None:
        self.sums.update(name, scores)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Reduced once per epoch, never per batch: predict gives ranks uneven batch counts.
        # Not torchmetrics: its sync gathers world_size copies of each parameter-sized state.
        sums = self.sums
        sums.samples = all_reduce_sum(trainer, sums.samples)
        for name, state in sums.sums.items():
            sums.sums[name] = all_reduce_sum(trainer, state)
        if trainer.is_global_zero:  # every rank holds the reduced sums; one is enough to report
            self.results = self.compute(pl_module, trainer.datamodule.dataset_names)
            self.write(trainer, pl_module)

    def compute(self, pl_module: LightningModule, dataset_names: list[str]) -> dict:
        """The counts, thresholds and histograms of every dataset, as JSON-ready data."""
        prefix, layers = decoder_layers(pl_module.model)
        n_layers = len(layers)
        layer_of = {n: layer_index(n, prefix) for n in self.sums.sums}
        kind_of = {n: module_kind(n, prefix) for n in self.sums.sums}
        per_dataset = {}
        for d, name in enumerate(dataset_names):
            means = self.sums.means(d)
            bad = [n for n, m in means.items() if not torch.isfinite(m).all()]
            if bad:
                raise FloatingPointError(f"NaN/inf scores for dataset {name!r} in modules {bad[:3]}; try dtype float32")
            lo, hi = C.log10_range(means)
            hist = C.layer_histograms(means, layer_of, n_layers, lo, hi, self.bins)
            zeros = C.zero_counts(means, layer_of, n_layers)
            thresholds = C.histogram_quantiles(hist, sum(zeros), lo, hi, self.quantiles)
            per_dataset[name] = {
                "n_samples": int(self.sums.samples[d]),
                "layer_counts": C.layer_counts(means, layer_of, n_layers, self.gamma),
                "module_counts": C.module_counts(means, layer_of, kind_of, n_layers, self.gamma),
                "quantile_counts": {
                    f"q{q:g}": {"threshold": t, "layer_counts": C.layer_counts(means, layer_of, n_layers, t)}
                    for q, t in zip(self.quantiles, thresholds, strict=True)
                },
                "log10_histogram": {"lo": lo, "hi": hi, "counts": hist.tolist(), "zeros": zeros},
                "mean_score_per_layer": C.layer_mean_scores(means, layer_of, n_layers),
            }
        layer_params = [0] * n_layers
        for name, state in self.sums.sums.items():
            layer_params[layer_of[name]] += state[0].numel()
        return {
            "model": model_name(pl_module),
            "target": pl_module.hparams.target,
            "gamma": self.gamma,
            "n_layers": n_layers,
            "layer_params": layer_params,
            "datasets": per_dataset,
        }

    def write(self, trainer: Trainer, pl_module: LightningModule) -> None:
        out, res = self.out, self.results
        io.write_json(out / "counts.json", res)
        rows = [
            (name, layer, kind, d["module_counts"][kind][layer], d["layer_counts"][layer])
            for name, d in res["datasets"].items()
            for layer in range(res["n_layers"])
            for kind in d["module_counts"]
        ]
        io.write_csv(out / "counts.csv", ["dataset", "layer", "module", "module_count", "layer_count"], rows)
        fig = plots.counts_figure({n: d["layer_counts"] for n, d in res["datasets"].items()}, self.gamma, res["model"])
        io.save_figure(out / "counts.png", fig)
        writer = tensorboard(trainer)
        if writer is not None:
            self._log_tensorboard(writer, res, fig)
        plots.close(fig)
        print(f"Finding 1 counts: {out / 'counts.png'}, counts.json, counts.csv; TensorBoard: tensorboard --logdir {out.parent}")

    @staticmethod
    def _log_tensorboard(writer, res: dict, fig) -> None:
        for name, d in res["datasets"].items():
            for layer, count in enumerate(d["layer_counts"]):
                writer.add_scalar(f"counts/{name}", count, global_step=layer)
            hist = d["log10_histogram"]
            bins = len(hist["counts"][0])
            edges = [hist["lo"] + (b + 1) * (hist["hi"] - hist["lo"]) / bins for b in range(bins)]
            for layer, counts in enumerate(hist["counts"]):
                num = sum(counts)
                if num == 0:
                    continue
                centres = [e - (hist["hi"] - hist["lo"]) / bins / 2 for e in edges]
                total = sum(c * x for c, x in zip(counts, centres, strict=True))
                squares = sum(c * x * x for c, x in zip(counts, centres, strict=True))
                # step = layer: TensorBoard's histogram view then reads as a stack over depth.
                writer.add_histogram_raw(
                    f"log10_mean_A/{name}", min=hist["lo"], max=hist["hi"], num=num, sum=total,
                    sum_squares=squares, bucket_limits=edges, bucket_counts=counts, global_step=layer,
                )
        writer.add_figure("counts", fig, close=False)
        writer.flush()
