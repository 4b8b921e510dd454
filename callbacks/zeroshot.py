"""Zero-shot accuracy on the (pruned) model in memory, after validation (docs/method.md §6)."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_activation import io
from lit_activation.callbacks.base import run_dir, tensorboard
from lit_activation.zeroshot import TASKS, zero_shot


class ZeroShotEval(Callback):
    """Runs lm-eval once validation ends, i.e. after WandaPruning pruned the model.

    Args:
        tasks: any of boolq, piqa, siqa, hellaswag (acc, acc_norm) and mmlu (5-shot by default);
            empty (the default): no zero-shot evaluation.
        data_files: task -> local JSON/JSONL in the benchmark's field layout (offline); tasks
            without a file use lm-eval's hub-backed task of the same name.
        num_fewshot: task -> shots, overriding the defaults (0; mmlu 5).
        limit: score only the first N examples of each task (None: all). Cost: one forward per
            (example, choice), batched.
        batch_size: lm-eval batch size.
    """

    def __init__(
        self,
        tasks: list[str] = [],  # noqa: B006 - jsonargparse needs a literal
        data_files: dict[str, str | list[str]] | None = None,
        num_fewshot: dict[str, int] | None = None,
        limit: int | None = None,
        batch_size: int = 8,
    ) -> None:
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"Unknown zero-shot tasks {unknown}; accepted: {list(TASKS)}")
        for name in data_files or {}:
            if name not in TASKS:
                raise ValueError(f"data_files names an unknown zero-shot task {name!r}; accepted: {list(TASKS)}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.tasks, self.data_files, self.num_fewshot, self.limit, self.batch_size = list(tasks), data_files, num_fewshot, limit, batch_size
        self.results: dict | None = None

    def describe(self) -> dict:
        """The options that decide the numbers (for records that pin a comparison's settings)."""
        return {"protocol": "lm-evaluation-harness", "tasks": self.tasks, "num_fewshot": self.num_fewshot, "limit": self.limit}

    def fresh(self) -> ZeroShotEval:
        """A new callback with the same options and no results (each run of a comparison)."""
        return ZeroShotEval(self.tasks, self.data_files, self.num_fewshot, self.limit, self.batch_size)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.tasks:
            return
        self.out = run_dir(trainer)  # a collective under DDP: resolved on every rank
        if trainer.is_global_zero:
            io.check_new([self.out / "zeroshot.json"])

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.tasks or not trainer.is_global_zero or self.results is not None:
            return
        model = pl_module.model
        was_training = model.training
        model.eval()
        self.results = zero_shot(model, pl_module.tokenizer, self.tasks, self.data_files, self.num_fewshot, self.limit, self.batch_size)
        model.train(was_training)
        io.write_json(self.out / "zeroshot.json", {**self.describe(), "results": self.results})
        writer = tensorboard(trainer)
        if writer is not None:
            for task, metrics in self.results.items():
                for metric in ("acc", "acc_norm"):
                    if metric in metrics:
                        writer.add_scalar(f"zeroshot/{task}/{metric}", metrics[metric])
            writer.flush()
        summary = ", ".join(f"{t} {m.get('acc', float('nan')):.3f}" for t, m in self.results.items())
        print(f"Zero-shot (lm-eval, acc): {summary}; {self.out / 'zeroshot.json'}")
