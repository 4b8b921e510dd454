"""Zero-shot accuracy through lm-evaluation-harness on the (pruned) model in memory, after validation."""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_activation import io
from lit_activation.callbacks.base import run_dir, tensorboard
from lit_activation.zeroshot import zero_shot


class ZeroShotEval(Callback):
    """Runs lm-eval once validation ends, i.e. after WandaPruning pruned the model (list it after).

    Args:
        tasks: any of boolq, piqa, siqa, hellaswag (acc, acc_norm) and mmlu (5-shot by default).
        data_files: task -> local JSON/JSONL in the benchmark's field layout (offline); tasks
            without a file use lm-eval's hub-backed task of the same name.
        num_fewshot: task -> shots, overriding the defaults (0; mmlu 5).
        limit: score only the first N examples of each task (None: all). Cost: one forward per
            (example, choice), batched.
        batch_size: lm-eval batch size.
    """

    def __init__(
        self,
        tasks: list[str] = ["boolq", "siqa", "piqa", "hellaswag", "mmlu"],  # noqa: B006
        data_files: dict[str, str | list[str]] | None = None,
        num_fewshot: dict[str, int] | None = None,
        limit: int | None = None,
        batch_size: int = 8,
    ) -> None:
        self.tasks, self.data_files, self.num_fewshot, self.limit, self.batch_size = tasks, data_files, num_fewshot, limit, batch_size
        self.results: dict | None = None

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.out = run_dir(trainer)  # a collective under DDP: resolved on every rank
        if trainer.is_global_zero:
            io.check_new([self.out / "zeroshot.json"])

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or self.results is not None:
            return
        model = pl_module.model
        was_training = model.training
        model.eval()
        self.results = zero_shot(model, pl_module.tokenizer, self.tasks, self.data_files, self.num_fewshot, self.limit, self.batch_size)
        model.train(was_training)
        io.write_json(self.out / "zeroshot.json", {"protocol": "lm-evaluation-harness", "limit": self.limit, "results": self.results})
        writer = tensorboard(trainer)
        if writer is not None:
            for task, metrics in self.results.items():
                for metric in ("acc", "acc_norm"):
                    if metric in metrics:
                        writer.add_scalar(f"zeroshot/{task}/{metric}", metrics[metric])
            writer.flush()
        summary = ", ".join(f"{t} {m.get('acc', float('nan')):.3f}" for t, m in self.results.items())
        print(f"Zero-shot (lm-eval, acc): {summary}; {self.out / 'zeroshot.json'}")
