"""The Trainer of every lit-activation command: Lightning's, plus `plan` and `compare`."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path
from typing import Literal

from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from lit_activation.callbacks.base import run_dir
from lit_activation.callbacks.pruning import Pruning
from lit_activation.callbacks.zeroshot import ZeroShotEval
from lit_activation.models.architectures import is_mixture_of_experts, model_config
from lit_activation.models.layers import num_layers_of
from lit_activation.planning.memory import GB, available_memory
from lit_activation.planning.plan import MemoryPlan, check_context, checked_job, plan_memory, unread_inputs_note
from lit_activation.pruning.allocations import OWL, Activation, Allocation, Uniform
from lit_activation.pruning.comparison import Comparison, Run, RunResult, dense_counts, sweep
from lit_activation.pruning.experts.layout import MoEShape
from lit_activation.pruning.experts.options import ExpertPruning
from lit_activation.pruning.metrics import PruningMetric
from lit_activation.pruning.prune import check_experts_prunable
from lit_activation.resume import find_run


class ActivationTrainer(Trainer):
    """Lightning's Trainer with two more entry points beside `predict` and `validate`:
    `plan` (memory, before any run) and `compare` (a resumable pruning sweep); `predict` resumes."""

    resume_dir: Path | None = None  # the interrupted run this one finishes (predict --resume)
    loggers: list[Logger]  # Lightning's property (its own types are not analysed by this project's type check)

    def predict(
        self,
        model: LightningModule | None = None,
        dataloaders: object = None,
        datamodule: LightningDataModule | None = None,
        return_predictions: bool | None = None,
        ckpt_path: str | None = None,
        weights_only: bool | None = None,
        resume: str | None = None,
    ) -> list | None:
        """Lightning's predict: scores, reduced by the callbacks; resumable.

        Args:
            return_predictions, ckpt_path, weights_only: Lightning's (predict_step returns nothing here).
            resume: finish an interrupted run in its own run dir: its path (runs/counts/version_3)
                or `last`, this logger's newest interrupted run. What it finished before (each
                Finding 1 dataset, each batch of groups) is not scored again, and its results equal
                an uninterrupted run's. The configuration must be the same in all that changes
                results (the devices and nodes may differ).
        """
        if resume is not None:
            self.resume_in(find_run(resume, self.logger_dir()))
        return super().predict(model, dataloaders, datamodule, return_predictions, ckpt_path, weights_only)

    @property
    def log_dir(self) -> str:
        """This run's directory, whatever its loggers (lit_activation/loggers.py): its config.yaml and
        every result file go there. A collective under DDP, as Lightning's."""
        return str(run_dir(self))

    def logger_dir(self) -> Path:
        """The directory holding this run's versions (the logger's save_dir/name)."""
        for logger in self.loggers:
            if isinstance(logger, (TensorBoardLogger, CSVLogger)):
                return Path(logger.save_dir) / logger.name
        raise ValueError("--resume needs a TensorBoard or CSV logger (trainer.logger): its run dirs are what is resumed")

    def resume_in(self, run: Path) -> None:
        """Write this run into the interrupted run's dir: its loggers point at that version."""
        self.resume_dir = run
        self.loggers = [
            type(logger)(logger.save_dir, name=logger.name, version=run.name) if isinstance(logger, (TensorBoardLogger, CSVLogger)) else logger
            for logger in self.loggers
        ]

    def plan(
        self,
        model: LightningModule,
        datamodule: LightningDataModule | None = None,
        device_type: Literal["cpu", "cuda"] | None = None,
        devices: int | None = None,
        memory_gb: float | None = None,
    ) -> MemoryPlan:
        """Print the run's predicted peak memory per device, phase by phase; load and run nothing.

        Args:
            device_type: plan for this kind of device instead of the trainer's (e.g. GPUs this machine
                does not have).
            devices: plan for this many devices per node instead of the trainer's.
            memory_gb: memory per device to check against (default: what the device reports).
        """
        if memory_gb is not None and not memory_gb > 0:
            raise ValueError(f"memory_gb must be > 0 (GB per device), got {memory_gb}")
        if devices is not None and devices < 1:
            raise ValueError(f"devices must be >= 1, got {devices}")
        note = self._set_up_for_the_plan(model, datamodule)
        job, config = checked_job(model, datamodule, self.callbacks, self)
        job = replace(job, layout=replace(job.layout, device_type=device_type or job.layout.device_type, devices=devices or job.layout.devices))
        available = int(memory_gb * GB) if memory_gb is not None else (available_memory(job.layout.device_type) if device_type is None else None)
        plan = plan_memory(job, config, available)
        print(plan.table() + (f"\n{note}" if note else ""))
        return plan

    def _set_up_for_the_plan(self, model: LightningModule, datamodule: LightningDataModule | None) -> str | None:
        """Read the data and the callbacks' files as a run would before its weights load, so that the
        plan counts them (and a data mistake shows now). Planning offline for a hub model must still
        work: then what cannot be read is left out, and the returned note says so."""
        if datamodule is None:
            return None
        stage = "predict" if type(datamodule).val_dataloader is LightningDataModule.val_dataloader else "validate"
        datamodule.trainer = self
        try:
            datamodule.setup(stage)
            for callback in self.callbacks:
                callback.setup(self, model, stage)
        except (OSError, ValueError, RuntimeError) as err:
            return unread_inputs_note(err)
        return None

    def compare(
        self,
        model: LightningModule,
        datamodule: LightningDataModule,
        allocations: list[Allocation] | None = None,
        metrics: list[PruningMetric] | None = None,
        sparsities: list[float] = [0.5, 0.6, 0.7],  # noqa: B006 - jsonargparse needs a literal
        seeds: list[int] = [0, 1, 2],  # noqa: B006
        output_dir: str = "runs/compare",
        experts: list[ExpertPruning] = [],  # noqa: B006 - jsonargparse needs a literal
    ) -> Path:
        """Dense vs each allocation × metric × sparsity × calibration seed: prune, validate, record; resumable.

        Args:
            allocations: the layer-wise methods compared (default: Uniform, Activation, OWL), each
                with its options; the `pruning` group gives everything else (calibration).
            metrics: the within-layer metrics compared (default: the `pruning` group's metric).
                A metric's dense-model scores (Taylor, GBLM) are computed once per calibration
                seed and shared by that seed's runs.
            sparsities: overall targets in (0, 1).
            seeds: calibration seeds (mean ± std over them).
            output_dir: results.csv, summary.md/csv, compare.png and one directory per run. Run the
                same command again to resume.
            experts: whole experts removed, each an ExpertPruning (ratio, score), at every seed.
        """
        pruning, zeroshot = self._configured(Pruning), self._configured(ZeroShotEval)
        if pruning.save_dir or pruning.nm:
            raise ValueError("compare sweeps unstructured sparsities and saves no model: leave pruning.nm and pruning.save_dir unset")
        allocations = allocations if allocations is not None else [Uniform(), Activation(), OWL()]
        metrics = metrics if metrics is not None else [pruning.metric]
        hp = model.hparams
        comparison = Comparison(output_dir, sweep(allocations, metrics, sparsities, seeds, experts), hp.model)
        comparison.check()
        config = model_config(hp.model, hp.trust_remote_code)
        if sparsities:
            moe = is_mixture_of_experts(config, hp.trust_remote_code)
            check_experts_prunable(moe, hp.model, metrics)
            for allocation in allocations:
                allocation.check_experts(hp.model, moe)
        for removal in experts:  # every removal checked before the first run: the routing allows it, its score can be had
            removal.check(hp.model, num_layers_of(config), MoEShape.of_config(config, hp.trust_remote_code))
        self._check_before_any_run(model, datamodule, pruning, zeroshot, allocations)
        fixed = {
            "model": hp.model, "dtype": hp.dtype, "compute_dtype": model.engine.compute_dtype, "evaluation": datamodule.metric_name,
            "calibration": {k: v for k, v in dataclasses.asdict(pruning.calibration).items() if k != "seed"},
            "zeroshot": zeroshot.describe(),
        }
        methods = {a.label: a.describe() for a in allocations} | {f"metric {m.label}": m.describe() for m in metrics}
        comparison.pin(fixed, methods | {f"experts {e.score.label} {e.ratio:g}": e.describe() for e in experts})
        device = self.strategy.root_device
        comparison.resolve_counts(allocations, lambda source: dense_counts(source, hp.model, hp.dtype, hp.trust_remote_code, device, pruning.calibration))

        def validate(run: Run, run_dir: Path) -> RunResult:
            calibration = replace(pruning.calibration, seed=run.seed)
            if run.experts is not None:  # whole experts removed, no weight pruned
                prune = pruning.replaced(sparsity=0.0, experts=run.experts, calibration=calibration)
            else:
                prune = pruning.replaced(
                    sparsity=run.sparsity, allocation=run.allocation or Uniform(), metric=run.pruning_metric or pruning.metric,
                    calibration=calibration, experts=ExpertPruning(),
                )
            evaluate = zeroshot.fresh()
            trainer = self.for_one_run([prune, evaluate], TensorBoardLogger(run_dir.parent, name=run_dir.name, version=""))
            (metrics,) = trainer.validate(model.fresh(), datamodule, verbose=False)
            return RunResult(float(metrics[datamodule.metric_name]), prune.record["achieved_sparsity"], evaluate.results or {})

        return comparison.run(validate, datamodule.metric_name)

    def for_one_run(self, callbacks: list[Callback], logger: Logger) -> ActivationTrainer:
        """A new trainer on this one's hardware, strategy and precision, with these callbacks and logger:
        one run of a comparison, which must not inherit the state of the runs before it."""
        return ActivationTrainer(
            strategy=self.strategy, num_nodes=self.num_nodes, precision=self.precision,
            inference_mode=self.validate_loop.inference_mode, enable_progress_bar=self.progress_bar_callback is not None,
            enable_checkpointing=False, enable_model_summary=False, logger=logger, callbacks=callbacks,
        )

    def _configured(self, kind: type) -> Pruning | ZeroShotEval:
        """The pruning / zero-shot callback configured for this run (the CLI's fixed groups)."""
        found = [cb for cb in self.callbacks if isinstance(cb, kind)]
        return found[0] if found else kind()

    def _check_before_any_run(
        self, model: LightningModule, datamodule: LightningDataModule, pruning: Pruning, zeroshot: ZeroShotEval, allocations: list[Allocation]
    ) -> None:
        """What each run's setup would refuse, checked once before the on-the-fly counts load a model:
        every allocation against the model, every sequence against its positions, the zero-shot files."""
        job, config = checked_job(model, datamodule, self.callbacks, self)
        layers = num_layers_of(config)
        for allocation in allocations:
            allocation.check(model.hparams.model, layers)
            check_context(replace(job, callbacks=[pruning.replaced(sparsity=0.5, allocation=allocation)]), config)
        zeroshot.setup(self, model, "validate")
