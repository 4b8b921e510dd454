"""Validations 1-2 as a Lightning callback: layer-wise Wanda pruning before evaluation starts."""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jsonargparse import lazy_instance
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from lit_activation import outputs, plots
from lit_activation.callbacks.base import log_results, model_name, run_dir
from lit_activation.data.samples import calibration_ids
from lit_activation.deprecated import moved_attributes
from lit_activation.distributed.sharding import is_sharded, shards
from lit_activation.models.architectures import check_prunable, input_widths, is_mixture_of_experts, model_config
from lit_activation.models.layers import num_layers_of
from lit_activation.models.loading import load_tokenizer
from lit_activation.planning.memory import release_memory
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.allocations import Allocation, Uniform
from lit_activation.pruning.context import Calibration, PruningContext
from lit_activation.pruning.expert_inputs import ExpertInputs
from lit_activation.pruning.experts.layout import MoEShape
from lit_activation.pruning.experts.options import ExpertPruning, remove_scored_experts
from lit_activation.pruning.export import full_state_dict, save_pruned
from lit_activation.pruning.metrics import PruningMetric, Wanda
from lit_activation.pruning.prune import achieved_sparsity, allocate_and_prune, check_experts_prunable, check_pruning, expert_record
from lit_activation.pruning.sequential import calibration_peak
from lit_activation.pruning.sparsity import check_nm_widths, parse_nm

OUTPUTS = ("pruning.json", "sparsity.png")

log = logging.getLogger(__name__)


class Pruning(Callback):
    """Prunes the LightningModule's model once, when validation starts (docs/method.md §5).

    Args:
        sparsity: overall target in [0, 1); 0 evaluates the dense model.
        allocation: how the sparsity is spread over the layers. `Uniform`, `Activation` (the paper,
            from Finding 1 counts), `OWL` or `AlphaPruning`, each with its own options (class_path).
        nm: N:M semi-structured pruning, e.g. '2:4'. Every layer at n/m, so sparsity must be n/m
            and the allocation Uniform.
        metric: which weights of a row go first. `Wanda` (|W|·‖X‖, default), `Magnitude` (|W|),
            `Taylor` (the mean Taylor score, this project's engine), `GBLM` (Wanda plus a gradient
            term), `SparseGPT` (OBS updates), each with its own options (class_path).
        calibration: the calibration batch (dataset, samples, seqlen, seed, files, batch_size).
        experts: whole experts of a mixture of experts removed first (ratio, score), before the
            weights are pruned at `sparsity` (docs/moe.md, "Removing experts").
        save_dir: save the pruned model there in Hugging Face format (never overwrites).
        expert_inputs: a mixture of experts: which calibration tokens each expert is pruned from
            (`routed`, `routed_weighted`, `all_tokens`), the few-token rule, routers pruned or kept
            dense (ExpertInputs; ignored for a dense model).
    """

    def __init__(
        self,
        sparsity: float = 0.0,
        allocation: Allocation = lazy_instance(Uniform),  # noqa: B008 - jsonargparse's default for a class_path option
        nm: str | None = None,
        metric: PruningMetric = lazy_instance(Wanda),  # noqa: B008 - jsonargparse's default for a class_path option
        calibration: Calibration = Calibration(),  # noqa: B008 - a frozen dataclass: jsonargparse's nested group
        save_dir: str | None = None,
        expert_inputs: ExpertInputs = ExpertInputs(),  # noqa: B008 - a frozen dataclass: jsonargparse's nested group
        experts: ExpertPruning = ExpertPruning(),  # noqa: B008 - a frozen dataclass: jsonargparse's nested group
    ) -> None:
        n, m = check_pruning(sparsity, allocation, metric, nm)
        if save_dir and Path(save_dir).exists():
            raise FileExistsError(f"save_dir {save_dir} already exists; a saved model is never overwritten")
        self.sparsity, self.allocation, self.nm, self.metric = sparsity, allocation, nm, metric
        self.calibration, self.save_dir, self.expert_inputs, self.experts = calibration, save_dir, expert_inputs, experts
        self.n, self.m = n, m
        self.calibration_ids: Tensor | None = None
        self.checked = False  # setup has checked the options against the model (and built the calibration batch)
        self.record: dict | None = None

    def replaced(self, **changes: Any) -> Pruning:
        """A fresh callback with some options changed (a comparison's runs): a copy of the allocation;
        the metric itself, whose dense-model scores (Taylor, GBLM) are keyed by model and batch."""
        options = {k: getattr(self, k) for k in ("sparsity", "allocation", "nm", "metric", "calibration", "save_dir", "expert_inputs", "experts")}
        options["allocation"] = copy.deepcopy(options["allocation"])
        return Pruning(**{**options, **changes})

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """What pruning adds (the plan): one block's calibration activations at a time, and what the
        allocation and the metric say their own work adds, and the experts' scores before. Nothing at sparsity 0
        without experts removed (dense evaluation)."""
        if self.sparsity == 0:
            return self.experts.memory_needs(plan, self.calibration)
        c = self.calibration
        needs = Footprint().add("pruning", "calibration (block in/out, args)", plan.peak(calibration_peak, c.samples, c.seqlen, c.batch_size))
        needs.feeds("pruning.calibration.seqlen", c.seqlen, "it")
        return needs.merge(self.allocation.memory_needs(plan)).merge(self.metric.memory_needs(plan, c)).merge(self.experts.memory_needs(plan, c))

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Before the weights load: check the allocation and the experts' removal against the model and build the calibration batch."""
        if stage != "validate" or (self.sparsity == 0 and not self.experts.removes) or self.checked:
            return
        if self.save_dir and trainer.is_global_zero:  # the rank that saves, before the weights, not after pruning
            outputs.check_can_create(self.save_dir, "save_dir")
        hp = pl_module.hparams
        config = model_config(hp.model, hp.trust_remote_code)
        check_prunable(config, hp.model, hp.trust_remote_code, self.experts.removes)
        if self.sparsity > 0:
            moe = is_mixture_of_experts(config, hp.trust_remote_code)
            check_experts_prunable(moe, hp.model, [self.metric])
            self.allocation.check_experts(hp.model, moe)
        if self.experts.removes:
            self.experts.check(hp.model, num_layers_of(config), MoEShape.of_config(config, hp.trust_remote_code))
        if self.sparsity > 0:
            self.allocation.check(hp.model, num_layers_of(config))
            _, m = parse_nm(self.nm)
            if m:
                try:
                    widths = input_widths(config, hp.trust_remote_code)
                except Exception as err:  # noqa: BLE001 - an architecture fake tensors cannot build: each width is checked as it is pruned
                    log.warning("N:M widths not checked before loading (%s: %s); each module's is checked when it is pruned", type(err).__name__, err)
                else:
                    check_nm_widths(m, widths)
        if self.sparsity > 0 or self.experts.calibrated:  # experts scored from a counts file alone need no calibration batch
            tokenizer = load_tokenizer(hp.model, hp.trust_remote_code)
            c = self.calibration
            self.calibration_ids = calibration_ids(c.dataset, tokenizer, c.samples, c.seqlen, c.seed, c.files)
        self.checked = True

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.prune(trainer, pl_module)

    def prune(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Allocate, prune, log; once per callback instance."""
        if self.record is not None:
            return
        out = run_dir(trainer)  # a collective under DDP: every rank resolves it
        if trainer.is_global_zero:
            outputs.check_new(out / f for f in OUTPUTS)
        model = pl_module.model
        method = self.allocation.label if self.sparsity > 0 else "experts" if self.experts.removes else "dense"
        record = {
            "model": model_name(pl_module), "method": method,
            "allocation": self.allocation.describe(), "metric": self.metric.label, "metric_options": self.metric.describe(),
            "target_sparsity": self.sparsity, "nm": self.nm, "calibration": asdict(self.calibration),
        }
        if self.experts.removes:  # first: the weights pruned below are the kept experts' (two-stage)
            self.setup(trainer, pl_module, "validate")  # a no-op when Lightning already called it
            if any(is_sharded(p) for p in model.parameters()):
                raise ValueError("experts.ratio: whole experts are removed in one process (every rank holding the whole model), not from a sharded model")
            calib = None if self.calibration_ids is None else self.calibration_ids.to(next(model.parameters()).device)
            record["experts"] = remove_scored_experts(model, self.experts, calib, self.calibration.batch_size, model_name(pl_module))
            del calib
        if self.sparsity > 0:
            self.setup(trainer, pl_module, "validate")  # a no-op when Lightning already called it
            assert self.calibration_ids is not None  # setup built it
            calib = self.calibration_ids.to(next(model.parameters()).device)
            c = self.calibration
            context = PruningContext(
                model, pl_module.tokenizer, calib, c.dataset, c.files, c.batch_size, pl_module.score_rows, shards(trainer), self.expert_inputs,
            )
            sparsities, pruned = allocate_and_prune(context, self.sparsity, self.allocation, self.metric, self.n, self.m)
            record.update(layer_sparsity=sparsities, allocation=self.allocation.describe(), **expert_record(context))
            del calib, context
            release_memory()  # before evaluation
        else:
            pruned = {}
        record.update(achieved_sparsity(model, pruned, shards(trainer), self.expert_inputs.routers))
        self.record = record
        state = full_state_dict(model) if self.save_dir else None  # a collective when sharded: every rank
        if trainer.is_global_zero:
            self._write(trainer, out, record)
            if self.save_dir:
                save_pruned(model, pl_module.tokenizer, self.save_dir, record, state)
                print(f"Pruned model saved to {self.save_dir} (Hugging Face format)")

    @staticmethod
    def _write(trainer: Trainer, out: Path, record: dict) -> None:
        outputs.write_json(out / "pruning.json", record)
        series = {"pruned (achieved)": record["layer_pruned"]}
        if "layer_sparsity" in record:
            series["target"] = record["layer_sparsity"]
        fig = plots.line_figure(
            list(range(len(record["layer_pruned"]))), series, "layer", "sparsity",
            f"{record['model']}: {record['method']} {record['target_sparsity']:.0%} ({record['metric']})",
        )
        outputs.save_figure(out / "sparsity.png", fig)
        log_results(
            trainer, scalars={"pruning/achieved_sparsity": record["achieved_sparsity"]}, per_layer={"pruning/layer_sparsity": record["layer_pruned"]},
            figures={"pruning/sparsity": fig},
        )
        plots.close(fig)
        kept = f", {record['experts']['experts_after']} of {record['experts']['experts_before']} experts kept per MoE layer" if "experts" in record else ""
        print(f"Pruning ({record['method']}, target {record['target_sparsity']}): achieved {record['achieved_sparsity']:.4f}{kept}; {out / 'pruning.json'}")


__getattr__ = moved_attributes(__name__, {"WandaPruning": "lit_activation.callbacks.pruning.Pruning"})  # the name of 0.1
