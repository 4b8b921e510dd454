"""The Trainer of every lit-activation command: Lightning's, plus `plan`."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from lightning.pytorch import LightningDataModule, LightningModule, Trainer

from lit_activation.memory import GB, available_memory
from lit_activation.plan import MemoryPlan, job_from_run, model_config_of, plan_memory


class ActivationTrainer(Trainer):
    """Lightning's Trainer with one more entry point, `plan`, beside `predict` and `validate`."""

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
        job = job_from_run(model, datamodule, self.callbacks, self)
        job = replace(job, device_type=device_type or job.device_type, devices=devices or job.devices)
        available = int(memory_gb * GB) if memory_gb else (available_memory(job.device_type) if device_type is None else None)
        plan = plan_memory(job, model_config_of(model.hparams), available)
        print(plan.table() + (f"\n{note}" if note else ""))
        return plan
