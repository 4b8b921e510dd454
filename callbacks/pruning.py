"""Validations 1-2 as a Lightning callback: layer-wise Wanda pruning before evaluation starts."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_activation import io, plots
from lit_activation.allocation import Allocation, activation_layer_counts, layer_sparsities
from lit_activation.callbacks.base import model_name, run_dir, tensorboard
from lit_activation.data.samples import calibration_ids, sample_inputs
from lit_activation.export import save_pruned
from lit_activation.memory import release_memory
from lit_activation.models import decoder_layers, layer_index, linear_modules
from lit_activation.plan import Pruning
from lit_activation.sparsity import check_nm, weighted_mean
from lit_activation.wanda import Metric, prune_wanda

OUTPUTS = ("pruning.json", "sparsity.png")


class WandaPruning(Callback):
    """Prunes the LightningModule's model once, when validation (or test) starts.

    Args:
        sparsity: overall target in [0, 1); 0 evaluates the dense model.
        allocation: `uniform`, `activation` (the paper: from Finding 1 counts) or `owl`.
        n, m: N:M semi-structured pruning (2:4, 4:8) when both > 0; sparsity must equal n/m.
        metric: `wanda` (|W|·‖X‖) or `magnitude` (|W|, the baseline).
        calibration: registered dataset for calibration (paper: c4; Validation 2: mmlu, siqa).
        calibration_samples, seqlen: the calibration batch, n × seqlen tokens (paper: 128 × 2048).
            seqlen is explicit: the model's max context (131072 for Llama-3.1) would not fit.
        seed: which calibration windows/examples are drawn.
        calibration_files: local file(s) for the calibration set (offline use).
        counts: per-layer activated counts for `activation` (e.g. counts.json's layer_counts).
        counts_file, counts_dataset, counts_from: or read them from a counts.json (`counts_from`:
            `gamma` or a quantile key such as `q0.9`); default dataset: the file's first.
        gamma, activation_samples, activation_length: else counts are computed on the fly from
            that many calibration-set windows of that length with threshold γ.
        alpha, beta: the paper's allocation constants (2, 0.2). owl_m, owl_lambda: OWL's (5, 0.08).
        batch_size: calibration sequences per block call (memory ∝ batch_size × seqlen).
        save_dir: save the pruned model there in Hugging Face format (never overwrites).
    """

    def __init__(
        self,
        sparsity: float = 0.5,
        allocation: Allocation = "uniform",
        n: int = 0,
        m: int = 0,
        metric: Metric = "wanda",
        calibration: str = "c4",
        calibration_samples: int = 128,
        seqlen: int = 2048,
        seed: int = 0,
        calibration_files: str | list[str] | None = None,
        counts: list[float] | None = None,
        counts_file: str | None = None,
        counts_dataset: str | None = None,
        counts_from: str = "gamma",
        gamma: float = 2e-5,
        activation_samples: int = 64,
        activation_length: int = 256,
        alpha: float = 2.0,
        beta: float = 0.2,
        owl_m: float = 5.0,
        owl_lambda: float = 0.08,
        batch_size: int = 1,
        save_dir: str | None = None,
    ) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"Sparsity {sparsity} is outside [0, 1)")
        check_nm(sparsity, n, m)
        if allocation not in ("uniform", "activation", "owl"):
            raise ValueError(f"Unknown allocation {allocation!r}; accepted: ['uniform', 'activation', 'owl']")
        if m and allocation != "uniform":
            raise ValueError(f"N:M pruning fixes every layer at n/m; allocation must be 'uniform', got {allocation!r}")
        if save_dir and Path(save_dir).exists():
            raise FileExistsError(f"save_dir {save_dir} already exists; a saved model is never overwritten")
        self.sparsity, self.allocation, self.n, self.m, self.metric = sparsity, allocation, n, m, metric
        self.calibration, self.calibration_samples, self.seqlen, self.seed = calibration, calibration_samples, seqlen, seed
        self.calibration_files = calibration_files
        self.counts, self.counts_file, self.counts_dataset, self.counts_from = counts, counts_file, counts_dataset, counts_from
        self.gamma, self.activation_samples, self.activation_length = gamma, activation_samples, activation_length
        self.alpha, self.beta, self.owl_m, self.owl_lambda = alpha, beta, owl_m, owl_lambda
        self.batch_size, self.save_dir = batch_size, save_dir
        self.record: dict | None = None

    def memory_needs(self) -> Pruning:
        """What pruning adds to memory (for the plan): the calibration batch and the allocation's work."""
        on_the_fly = self.allocation == "activation" and self.counts is None and not self.counts_file
        counts = (self.activation_samples, self.activation_length) if on_the_fly else None
        return Pruning(self.calibration_samples, self.seqlen, self.batch_size, counts, owl=self.allocation == "owl")

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.prune(trainer, pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.prune(trainer, pl_module)

    def _counts(self, pl_module: LightningModule) -> list[float]:
        if self.counts is not None:
            return list(self.counts)
        if self.counts_file:
            data = json.loads(Path(self.counts_file).read_text())
            name = self.counts_dataset or next(iter(data["datasets"]))
            if name not in data["datasets"]:
                raise ValueError(f"counts_dataset {name!r} is not in {self.counts_file}; it has {list(data['datasets'])}")
            entry = data["datasets"][name]
            if self.counts_from == "gamma":
                return entry["layer_counts"]
            if self.counts_from not in entry["quantile_counts"]:
                raise ValueError(f"counts_from {self.counts_from!r} unknown; accepted: 'gamma', {list(entry['quantile_counts'])}")
            return entry["quantile_counts"][self.counts_from]["layer_counts"]
        samples = sample_inputs(
            self.calibration, self.activation_samples, pl_module.tokenizer, self.seed,
            self.activation_length, self.activation_length, self.calibration_files,
        )
        return activation_layer_counts(pl_module.model, samples, self.gamma)

    def prune(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Allocate, prune, log; once per callback instance."""
        if self.record is not None:
            return
        out = run_dir(trainer)  # a collective under DDP: every rank resolves it
        if trainer.is_global_zero:
            io.check_new(out / f for f in OUTPUTS)
        model = pl_module.model
        prefix, layers = decoder_layers(model)
        record = {
            "model": model_name(pl_module), "method": "dense" if self.sparsity == 0 else self.allocation,
            "metric": self.metric, "target_sparsity": self.sparsity, "n": self.n, "m": self.m,
            "calibration": self.calibration, "calibration_samples": self.calibration_samples,
            "seqlen": self.seqlen, "seed": self.seed,
        }
        if self.sparsity > 0:
            device = next(model.parameters()).device
            calib = calibration_ids(self.calibration, pl_module.tokenizer, self.calibration_samples, self.seqlen, self.seed, self.calibration_files).to(device)
            counts = self._counts(pl_module) if self.allocation == "activation" else None
            sparsities = layer_sparsities(
                self.allocation, model, self.sparsity, calib, counts, self.alpha, self.beta, self.owl_m, self.owl_lambda, self.batch_size
            )
            release_memory()  # the allocation's scoring or OWL pass is done: its memory goes back
            pruned = prune_wanda(model, calib, sparsities, self.n, self.m, self.metric, self.batch_size)
            del calib
            release_memory()  # before evaluation
            record.update(layer_sparsity=sparsities, counts=counts)
        else:
            pruned = {}
        record.update(self._achieved(model, prefix, len(layers), pruned))
        self.record = record
        if trainer.is_global_zero:
            self._write(trainer, out, record)
            if self.save_dir:
                save_pruned(model, pl_module.tokenizer, self.save_dir, record)
                print(f"Pruned model saved to {self.save_dir} (Hugging Face format)")

    @staticmethod
    def _achieved(model, prefix: str, n_layers: int, pruned: dict[str, float]) -> dict:
        """Pruned fraction (by mask) and zero fraction (incl. zeros already there) per layer and module."""
        zeros, sizes, masked = [0] * n_layers, [0] * n_layers, [0.0] * n_layers
        modules = {}
        for name, module in linear_modules(model).items():
            layer = layer_index(name, prefix)
            numel = module.weight.numel()
            zero = int((module.weight == 0).sum())
            zeros[layer] += zero
            sizes[layer] += numel
            masked[layer] += pruned.get(name, 0.0) * numel
            modules[name] = {"pruned": pruned.get(name, 0.0), "zeros": zero / numel}
        layer_pruned = [p / s for p, s in zip(masked, sizes, strict=True)]
        return {
            "achieved_sparsity": weighted_mean(layer_pruned, sizes),
            "achieved_zero_fraction": sum(zeros) / sum(sizes),
            "layer_pruned": layer_pruned,
            "layer_zero_fraction": [z / s for z, s in zip(zeros, sizes, strict=True)],
            "modules": modules,
        }

    @staticmethod
    def _write(trainer: Trainer, out: Path, record: dict) -> None:
        io.write_json(out / "pruning.json", record)
        series = {"pruned (achieved)": record["layer_pruned"]}
        if "layer_sparsity" in record:
            series["target"] = record["layer_sparsity"]
        fig = plots.line_figure(
            list(range(len(record["layer_pruned"]))), series, "layer", "sparsity",
            f"{record['model']}: {record['method']} {record['target_sparsity']:.0%} ({record['metric']})",
        )
        io.save_figure(out / "sparsity.png", fig)
        writer = tensorboard(trainer)
        if writer is not None:
            for layer, value in enumerate(record["layer_pruned"]):
                writer.add_scalar("pruning/layer_sparsity", value, global_step=layer)
            writer.add_scalar("pruning/achieved_sparsity", record["achieved_sparsity"])
            writer.add_figure("pruning/sparsity", fig, close=False)
            writer.flush()
        plots.close(fig)
        print(f"Pruning ({record['method']}, target {record['target_sparsity']}): achieved {record['achieved_sparsity']:.4f}; {out / 'pruning.json'}")
