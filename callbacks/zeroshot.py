"""Zero-shot accuracy on the (pruned) model in memory, after validation (docs/method.md §6)."""

from __future__ import annotations

from typing import Literal

from lightning.pytorch import Callback, LightningModule, Trainer

from lit_activation import outputs
from lit_activation.analyses.zeroshot import (
    DEFAULT_SHOTS,
    MMLU_SHOTS,
    PAPER_LABELS,
    PAPER_N,
    TASKS,
    check_local_task,
    longest_request,
    paper_accuracy,
    paper_items,
    zero_shot,
)
from lit_activation.callbacks.base import log_results, run_dir
from lit_activation.models.architectures import context_length
from lit_activation.models.loading import load_tokenizer
from lit_activation.planning import simulate
from lit_activation.planning.plan import Footprint, PlanContext

PROTOCOLS = ("lm_eval", "paper")


class ZeroShotEval(Callback):
    """Zero-shot accuracy once validation ends, i.e. after Pruning pruned the model.

    Two protocols, never mixed; zeroshot.json, describe() and the printed line name the one used:

    - `lm_eval` (default): lm-evaluation-harness (acc, acc_norm, stderr).
    - `paper`: the paper's own scorer: `n` records per task drawn with `seed`, the arg-max of the
      answer-label token logits at the last position (acc), MMLU with 5 fixed demonstrations.

    Args:
        tasks: any of boolq, piqa, siqa, hellaswag and mmlu (5-shot); empty (the default): no
            zero-shot evaluation.
        data_files: task -> local JSON/JSONL in the benchmark's field layout (offline); both
            protocols read the same files. Tasks without a file are read from the hub.
        num_fewshot: lm_eval only: task -> shots, overriding the defaults (0; mmlu 5).
        limit: lm_eval only: score only the first N examples of each task (None: all). Cost: one
            forward per (example, choice), batched.
        batch_size: forwards per batch (both protocols).
        protocol: `lm_eval` or `paper`.
        n: paper only: records scored per task (the paper: 256); all of them when fewer exist.
        seed: paper only: the sample's seed (every task, BoolQ included, is sampled with it).
        demonstrations: paper only, with mmlu: MMLU records (e.g. auxiliary_train) whose first 5, with
            answers, precede each question.
    """

    def __init__(
        self,
        tasks: list[str] = [],  # noqa: B006 - jsonargparse needs a literal
        data_files: dict[str, str | list[str]] | None = None,
        num_fewshot: dict[str, int] | None = None,
        limit: int | None = None,
        batch_size: int = 8,
        protocol: Literal["paper", "lm_eval"] = "lm_eval",
        n: int = PAPER_N,
        seed: int = 0,
        demonstrations: str | None = None,
    ) -> None:
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"Unknown zero-shot tasks {unknown}; accepted: {list(TASKS)}")
        for name in data_files or {}:
            if name not in TASKS:
                raise ValueError(f"data_files names an unknown zero-shot task {name!r}; accepted: {list(TASKS)}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"Unknown zero-shot protocol {protocol!r}; accepted: {list(PROTOCOLS)}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if protocol == "paper":
            self._check_paper_options(tasks, num_fewshot, limit, demonstrations)
        self.tasks, self.data_files, self.num_fewshot, self.limit, self.batch_size = list(tasks), data_files, num_fewshot, limit, batch_size
        self.protocol, self.n, self.seed, self.demonstrations = protocol, n, seed, demonstrations
        self.results: dict | None = None
        self._longest: int | None = None  # tokens of the longest input it will score, once its files are read
        self._unread: list[str] = []  # tasks read from the hub: their lengths are known only then

    @staticmethod
    def _check_paper_options(tasks: list[str], num_fewshot: dict[str, int] | None, limit: int | None, demonstrations: str | None) -> None:
        """Options that would silently do nothing under the paper protocol are refused instead."""
        unlabelled = sorted(set(tasks) - set(PAPER_LABELS))
        if unlabelled:
            raise ValueError(f"Tasks {unlabelled} have no label scheme in the paper protocol; accepted: {sorted(PAPER_LABELS)}")
        if limit is not None:
            raise ValueError("limit belongs to protocol lm_eval; the paper protocol scores n seeded records per task (option n)")
        if num_fewshot:
            raise ValueError(f"num_fewshot belongs to protocol lm_eval; the paper protocol uses MMLU's {MMLU_SHOTS} fixed demonstrations only")
        if "mmlu" in tasks and not demonstrations:
            raise ValueError(f"protocol paper with mmlu needs demonstrations: a file whose first {MMLU_SHOTS} MMLU records (auxiliary_train) are the shots")

    def describe(self) -> dict:
        """The options that decide the numbers (for records that pin a comparison's settings)."""
        if self.protocol == "paper":
            return {"protocol": "paper", "tasks": self.tasks, "n": self.n, "seed": self.seed, "demonstrations": self.demonstrations}
        # unchanged from before the paper protocol existed, so earlier comparisons still resume
        return {"protocol": "lm-evaluation-harness", "tasks": self.tasks, "num_fewshot": self.num_fewshot, "limit": self.limit}

    def fresh(self) -> ZeroShotEval:
        """A new callback with the same options and no results (each run of a comparison)."""
        fresh = ZeroShotEval(self.tasks, self.data_files, self.num_fewshot, self.limit, self.batch_size, self.protocol, self.n, self.seed, self.demonstrations)
        fresh._longest, fresh._unread = self._longest, self._unread  # the same files: read once
        if self.protocol == "paper" and hasattr(self, "_items"):
            fresh._items = self._items
        return fresh

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Before the weights load (not after pruning and perplexity): read and check every local file,
        and measure the longest input it will score (the memory plan's zero-shot phase)."""
        if stage != "validate" or not self.tasks or self._longest is not None:
            return
        hp = pl_module.hparams
        tokenizer = load_tokenizer(hp.model, hp.trust_remote_code)
        if self.protocol == "paper":
            self._items = self._paper_items()
            self._longest = max(len(tokenizer(p)["input_ids"]) for prompts, _ in self._items.values() for p in prompts)
            return
        files, shots, lengths = self.data_files or {}, {**DEFAULT_SHOTS, **(self.num_fewshot or {})}, []
        for task in self.tasks:  # a hub task is left to lm-eval
            if files.get(task):
                check_local_task(task, files[task])
                lengths.append(longest_request(task, files[task], tokenizer, shots.get(task, 0), self.limit))
        self._unread = [task for task in self.tasks if not files.get(task)]
        self._longest = max(lengths, default=0)

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """One batch's forward and its logits (the plan): batch_size inputs as long as the longest it
        will score, known once its files are read. lm-eval's log-likelihoods take a log-softmax over
        the vocabulary at every position; the paper's scorer reads the last position only."""
        needs = Footprint()
        if not self.tasks:
            return needs
        if self._unread:
            needs.not_counted.append(f"zero-shot tasks read from the hub ({', '.join(self._unread)}): their lengths are known once read")
        if not self._longest:
            if not self._unread:
                needs.not_counted.append("zero-shot: its files are not read yet")
            return needs
        length = min(self._longest, context_length(plan.config) or self._longest)
        item = "forward + log-likelihoods" if self.protocol == "lm_eval" else "forward + last-position logits"
        return needs.add("zero-shot", item, plan.peak(simulate.logits_peak, self.batch_size, length, self.protocol == "lm_eval"))

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.tasks:
            return
        self.out = run_dir(trainer)  # a collective under DDP: resolved on every rank
        if trainer.is_global_zero:
            outputs.check_new([self.out / "zeroshot.json"])

    def _paper_items(self) -> dict[str, tuple[list[str], list[int]]]:
        """task -> (prompts, gold) of the seeded sample, from the same files the lm_eval protocol reads."""
        from lit_activation.data.registry import load_records  # imports `datasets` lazily

        shots = None
        if "mmlu" in self.tasks:
            shots = load_records("mmlu", self.demonstrations)[:MMLU_SHOTS]
            if len(shots) < MMLU_SHOTS:
                raise ValueError(f"demonstrations {self.demonstrations!r} holds {len(shots)} records; the paper protocol needs {MMLU_SHOTS}")
        files = self.data_files or {}
        return {task: paper_items(task, load_records(task, files.get(task)), self.n, self.seed, shots) for task in self.tasks}

    def _evaluate(self, pl_module: LightningModule) -> dict[str, dict[str, float]]:
        model, tokenizer = pl_module.model, pl_module.tokenizer
        if self.protocol == "lm_eval":
            return zero_shot(model, tokenizer, self.tasks, self.data_files, self.num_fewshot, self.limit, self.batch_size)
        return {
            task: {"acc": paper_accuracy(model, tokenizer, task, prompts, gold, self.batch_size), "n": len(gold)}
            for task, (prompts, gold) in self._items.items()
        }

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.tasks or not trainer.is_global_zero or self.results is not None:
            return
        model = pl_module.model
        was_training = model.training
        model.eval()
        self.results = self._evaluate(pl_module)
        model.train(was_training)
        outputs.write_json(self.out / "zeroshot.json", {**self.describe(), "results": self.results})
        prefix = "zeroshot" if self.protocol == "lm_eval" else "zeroshot_paper"  # the two protocols' numbers never share a tag
        log_results(
            trainer, scalars={f"{prefix}/{task}/{m}": metrics[m] for task, metrics in self.results.items() for m in ("acc", "acc_norm") if m in metrics}
        )
        summary = ", ".join(f"{t} {m.get('acc', float('nan')):.3f}" for t, m in self.results.items())
        how = "lm_eval protocol (lm-evaluation-harness)" if self.protocol == "lm_eval" else f"paper protocol, label logits, n={self.n}, seed {self.seed}"
        print(f"Zero-shot ({how}; acc): {summary}; {self.out / 'zeroshot.json'}")
