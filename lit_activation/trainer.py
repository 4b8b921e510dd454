"""The Trainer of every lit-activation command: Lightning's, plus `plan` and `compare`."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lit_activation import outputs
from lit_activation.callbacks.pruning import WandaPruning
from lit_activation.callbacks.zeroshot import ZeroShotEval
from lit_activation.models.layers import num_layers_of
from lit_activation.models.loading import load_causal_lm
from lit_activation.planning.memory import GB, available_memory, release_memory
from lit_activation.planning.plan import MemoryPlan, check_context, checked_job, plan_memory
from lit_activation.pruning import comparison as cmp
from lit_activation.pruning.allocations import OWL, Activation, Allocation, GivenCounts, OnTheFlyCounts, Uniform
from lit_activation.pruning.context import PruningContext
from lit_activation.pruning.metrics import PruningMetric


class ActivationTrainer(Trainer):
    """Lightning's Trainer with two more entry points beside `predict` and `validate`:
    `plan` (memory, before any run) and `compare` (a resumable pruning sweep)."""

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
            device_type, devices: plan for this hardware instead of the trainer's (e.g. GPUs this
                machine does not have).
            memory_gb: memory per device to check against (default: what the device reports).
        """
        if memory_gb is not None and not memory_gb > 0:
            raise ValueError(f"memory_gb must be > 0 (GB per device), got {memory_gb}")
        if devices is not None and devices < 1:
            raise ValueError(f"devices must be >= 1, got {devices}")
        note = None
        if datamodule is not None:
            # The data are in memory before the model loads in a real run: count them the same way
            # (and find a data mistake now, not after the weights). Planning offline for a hub
            # model must still work: then the data are left out, and the plan says so.
            datamodule.trainer = self
            try:
                datamodule.setup("predict")
            except (OSError, ValueError, RuntimeError) as err:
                note = f"  note: data not loaded ({str(err).splitlines()[0][:160]}); their memory is not counted"
        job, config = checked_job(model, datamodule, self.callbacks, self)
        job = replace(job, device_type=device_type or job.device_type, devices=devices or job.devices)
        available = int(memory_gb * GB) if memory_gb is not None else (available_memory(job.device_type) if device_type is None else None)
        plan = plan_memory(job, config, available)
        print(plan.table() + (f"\n{note}" if note else ""))
        return plan

    def compare(
        self,
        model: LightningModule,
        datamodule: LightningDataModule,
        allocations: list[Allocation] | None = None,
        metrics: list[PruningMetric] | None = None,
        sparsities: list[float] = [0.5, 0.6, 0.7],  # noqa: B006 - jsonargparse needs a literal
        seeds: list[int] = [0, 1, 2],  # noqa: B006
        output_dir: str = "runs/compare",
    ) -> Path:
        """Dense vs each allocation × metric × sparsity × calibration seed: prune, validate, record; resumable.

        Args:
            allocations: the layer-wise methods compared (default: Uniform, Activation, OWL), each
                with its options; the `pruning` group gives everything else (calibration).
            metrics: the within-layer metrics compared (default: the `pruning` group's metric).
                A metric's dense-model scores (Taylor, GBLM) are computed once per calibration
                seed and shared by that seed's runs.
            sparsities: overall targets in (0, 1). seeds: calibration seeds (mean ± std over them).
            output_dir: results.csv, summary.md/csv, compare.png and one directory per run. Run the
                same command again to resume.
        """
        pruning = self._configured(WandaPruning)
        zeroshot = self._configured(ZeroShotEval)
        if pruning.save_dir or pruning.nm:
            raise ValueError("compare sweeps unstructured sparsities and saves no model: leave pruning.nm and pruning.save_dir unset")
        allocations = allocations if allocations is not None else [Uniform(), Activation(), OWL()]
        metrics = metrics if metrics is not None else [pruning.metric]
        runs = cmp.sweep(allocations, metrics, sparsities, seeds)
        out = Path(output_dir)
        cmp.check_output_dir(out)
        out.mkdir(parents=True, exist_ok=True)
        hp = model.hparams
        fixed = {
            "model": hp.model, "dtype": hp.dtype, "compute_dtype": model.engine.compute_dtype, "evaluation": datamodule.metric_name,
            "calibration": {k: v for k, v in dataclasses.asdict(pruning.calibration).items() if k != "seed"},
            "zeroshot": zeroshot.describe(),
        }
        methods = {a.label: a.describe() for a in allocations} | {f"metric {m.label}": m.describe() for m in metrics}
        self._check_before_any_run(model, datamodule, pruning, zeroshot, allocations)
        record = cmp.pin_configuration(out, fixed, methods)
        self._resolve_counts(model, pruning, allocations, record, out)
        done = cmp.recorded(out)
        todo = [r for r in runs if r.key not in done]
        elapsed: list[float] = []
        for k, run in enumerate(todo, len(runs) - len(todo) + 1):
            print(cmp.progress(k, len(runs), run, elapsed), flush=True)
            start = time.perf_counter()
            perplexity, achieved, zero_shot = self._one_run(model, datamodule, pruning, zeroshot, run, out)
            seconds = time.perf_counter() - start
            row = [run.method, run.metric, run.sparsity, run.seed, perplexity, datamodule.metric_name, achieved, json.dumps(zero_shot), round(seconds, 1)]
            outputs.append_csv_row(out / cmp.RESULTS, cmp.HEADER, row)
            cmp.write_summary(out, hp.model)
            elapsed.append(seconds)
        if not todo:  # a finished sweep's summary, rebuilt by this version from results.csv
            cmp.write_summary(out, hp.model)
        print((out / "summary.md").read_text() if (out / "summary.md").is_file() else "")
        print(f"Comparison: {out / 'summary.md'}, summary.csv, {cmp.RESULTS}, compare.png ({len(runs)} runs, {len(todo)} run now)")
        return out

    def _configured(self, kind: type) -> WandaPruning | ZeroShotEval:
        """The pruning / zero-shot callback configured for this run (the CLI's fixed groups)."""
        found = [cb for cb in self.callbacks if isinstance(cb, kind)]
        return found[0] if found else kind()

    def _check_before_any_run(
        self, model: LightningModule, datamodule: LightningDataModule, pruning: WandaPruning, zeroshot: ZeroShotEval, allocations: list[Allocation]
    ) -> None:
        """What each run's setup would refuse, checked once before the on-the-fly counts load a model:
        every allocation against the model, every sequence against its positions, the zero-shot files."""
        job, config = checked_job(model, datamodule, self.callbacks, self)
        layers = num_layers_of(config)
        for allocation in allocations:
            allocation.check(model.hparams.model, layers)
            counts = replace(pruning.memory_needs(), activation_counts=allocation.on_the_fly_counts())
            check_context(replace(job, pruning=counts), config)
        zeroshot.setup(self, model, "validate")

    def _resolve_counts(self, model: LightningModule, pruning: WandaPruning, allocations: list[Allocation], record: dict, out: Path) -> None:
        """On-the-fly activation counts, once per comparison: every run starts from the same dense model."""
        for allocation in allocations:
            if not (isinstance(allocation, Activation) and isinstance(allocation.counts, OnTheFlyCounts)):
                continue
            counts = record["resolved_counts"].get(allocation.label)
            if counts is None:
                hp, c = model.hparams, pruning.calibration
                dense, tokenizer = load_causal_lm(hp.model, hp.dtype, hp.trust_remote_code, device=self.strategy.root_device)
                context = PruningContext(dense, tokenizer, torch.empty(0, dtype=torch.long), c.dataset, c.files, c.batch_size)
                counts = allocation.counts.layer_counts(context)
                del dense, context
                release_memory()
                record["resolved_counts"][allocation.label] = counts
                outputs.write_json(out / "comparison.json", record, overwrite=True)
            allocation.counts = GivenCounts(counts)

    def _one_run(
        self, model: LightningModule, datamodule: LightningDataModule, pruning: WandaPruning, zeroshot: ZeroShotEval, run: cmp.Run, out: Path
    ) -> tuple[float, float, dict]:
        """Fresh dense weights, this run's pruning, one validate: (perplexity, achieved sparsity, zero-shot)."""
        run_dir = out / "runs" / run.name
        cmp.set_aside(run_dir)
        prune = pruning.replaced(
            sparsity=run.sparsity, allocation=run.allocation or Uniform(), metric=run.pruning_metric or pruning.metric,
            calibration=replace(pruning.calibration, seed=run.seed),
        )
        evaluate = zeroshot.fresh()
        self.callbacks = [cb for cb in self.callbacks if not isinstance(cb, (WandaPruning, ZeroShotEval))] + [prune, evaluate]
        self.loggers = [TensorBoardLogger(out / "runs", name=run.name, version="")]
        model.model = None  # configure_model loads the dense weights again
        (metrics,) = self.validate(model, datamodule, verbose=False)
        return float(metrics[datamodule.metric_name]), prune.record["achieved_sparsity"], evaluate.results or {}
