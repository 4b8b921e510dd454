"""Where the paper's allocation gets its per-layer activated-parameter counts N_i.

One nested option with three choices, selected by `class_path`:
- `GivenCounts`: a list, one count per layer;
- `CountsFile`: a counts.json written by a Finding 1 run (checked against the model before any work);
- `OnTheFlyCounts`: Finding 1 computed on the dense model now, with its own γ, samples and length.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from lit_activation.analyses.counts import layer_counts
from lit_activation.data.datamodule import Group, pad_groups
from lit_activation.data.registry import check_files
from lit_activation.distributed.shards import LOCAL, Shards
from lit_activation.engine import EngineSettings, RowRanges, stream_taylor_scores
from lit_activation.engine.reduce import ScoreSum
from lit_activation.files import NUMBER, TEXT, BrokenFile, read_json_object, shape_problem
from lit_activation.models.layers import layer_map, linear_modules
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.context import PruningContext


def activation_layer_counts(
    model: nn.Module, samples: Sequence[Sequence[int]], gamma: float, batch_size: int = 4, rows: RowRanges | None = None, shards: Shards = LOCAL
) -> list[int]:
    """Finding 1 on the fly: per layer, the parameters whose mean Taylor score over `samples` exceeds γ.

    A sharded rank scores its own `rows` and its counts are summed over its shard group (`shards`).
    """
    modules = linear_modules(model)
    sums = ScoreSum(modules, rows=rows)
    device = next(model.parameters()).device
    for start in range(0, len(samples), batch_size):
        # pad id 0 is harmless: padded positions are masked out of the scores
        batch = pad_groups([Group(i, [list(r)], [0]) for i, r in enumerate(samples[start : start + batch_size])], pad_id=0)
        size = len(batch["input_ids"])
        sums.begin(size, "the on-the-fly activation counts", range(start, start + size))
        stream_taylor_scores(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), sums.update, EngineSettings(rows=rows), modules)
        sums.end()
    layer_of, _, n_layers = layer_map(model)
    return shards.sum(layer_counts(sums.means(), layer_of, n_layers, gamma)).tolist()


def check_count_values(counts: Sequence, source: str) -> None:
    """Counts of activated parameters are finite numbers >= 0, else one line naming `source`. Equal
    counts (all 0 included) are valid: the allocation then follows α/i alone (Activation warns)."""
    values = [float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else math.nan for c in counts]
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v) or v < 0), None)
    if bad is not None:
        raise ValueError(f"{source}: layer {bad}'s count is {counts[bad]!r}; counts of activated parameters are finite numbers >= 0")


COUNTS_REMEDY = "give a counts.json written by `lit-activation predict` with ActivationCounts"
# What the allocation reads of a counts.json (the report's shapes: a field present has this kind).
COUNTS_SHAPE = {"model": TEXT, "datasets": {"*": {"layer_counts": [NUMBER], "quantile_counts": {"*": {"layer_counts": [NUMBER]}}}}}


class CountsSource(ABC):
    """Per-layer counts N_i for the activation allocation."""

    def check(self, model_name: str, n_layers: int) -> None:
        """Fail before any work if the counts cannot belong to this model."""

    @abstractmethod
    def layer_counts(self, context: PruningContext) -> list[float]:
        """One count per decoder layer."""

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """What computing the counts adds to memory (the plan): nothing, unless they are computed now."""
        return Footprint()

    def describe(self) -> dict:
        """JSON-ready record of where the counts came from."""
        return {"source": type(self).__name__, **vars(self)}


class GivenCounts(CountsSource):
    """Counts given directly, one per decoder layer (e.g. a counts.json's layer_counts)."""

    def __init__(self, counts: list[float]) -> None:
        self.counts = [float(c) for c in counts]

    def check(self, model_name: str, n_layers: int) -> None:
        if len(self.counts) != n_layers:
            raise ValueError(f"GivenCounts has {len(self.counts)} counts; {model_name!r} has {n_layers} decoder layers (one count per layer)")
        check_count_values(self.counts, "GivenCounts")

    def layer_counts(self, context: PruningContext) -> list[float]:
        return self.counts


class CountsFile(CountsSource):
    """Counts read from a Finding 1 run's counts.json.

    Args:
        path: the counts.json.
        dataset: which of its datasets (None: the file's first).
        key: `gamma` (counts at the run's γ) or a quantile key such as `q0.9`.
        model: the model the counts must come from (None: this run's model). Set it when the same
            model was named differently (a hub id there, a local directory here).
    """

    def __init__(self, path: str, dataset: str | None = None, key: str = "gamma", model: str | None = None) -> None:
        self.path, self.dataset, self.key, self.model = path, dataset, key, model

    def entry(self) -> tuple[dict, dict]:
        """(the whole counts.json, the chosen dataset's entry), the file checked and refused in one line
        naming it when it is no counts file or lacks the dataset (also read by expert pruning's TaylorMass)."""
        path = Path(self.path)
        if not path.is_file():
            raise FileNotFoundError(f"counts file {self.path!r} does not exist (a counts.json written by `lit-activation predict` with ActivationCounts)")
        data = read_json_object(path, COUNTS_REMEDY)
        problem = shape_problem(data, COUNTS_SHAPE, "counts")
        datasets = data.get("datasets")
        if problem is None and not datasets:
            problem = "has no counts of any dataset ('datasets')"
        if problem is not None:
            raise BrokenFile(path, f"is not a counts.json of ActivationCounts: {problem}", COUNTS_REMEDY)
        name = self.dataset or next(iter(datasets))
        if name not in datasets:  # "Unknown ...; accepted: [...]": the command line adds the closest name
            raise ValueError(f"Unknown dataset {name!r} in counts file {self.path!r}; accepted: {list(datasets)}")
        entry = datasets[name] or {}
        quantiles = entry.get("quantile_counts") or {}
        if self.key != "gamma" and self.key not in quantiles:
            raise ValueError(f"Unknown key {self.key!r} in counts file {self.path!r}; accepted: {['gamma', *quantiles]}")
        if self._counts(entry) is None:
            raise BrokenFile(path, f"is not a counts.json of ActivationCounts: dataset {name!r} has no layer_counts ({self.key})", COUNTS_REMEDY)
        return data, entry

    def _counts(self, entry: dict) -> list | None:
        """The entry's counts at this source's key (the run's γ, or a quantile's)."""
        if self.key == "gamma":
            return entry.get("layer_counts")
        return ((entry.get("quantile_counts") or {}).get(self.key) or {}).get("layer_counts")

    def check(self, model_name: str, n_layers: int) -> None:
        data, entry = self.entry()
        expected = self.model or model_name
        if data.get("model") != expected:
            raise ValueError(
                f"counts file {self.path!r} holds counts of model {data.get('model')!r}; this run prunes {model_name!r}. "
                f"Use counts of this model, or set counts.init_args.model {data.get('model')!r} if it is the same model under another name"
            )
        counts = self._counts(entry)
        if len(counts) != n_layers:
            raise ValueError(f"counts file {self.path!r} has counts for {len(counts)} layers; {model_name!r} has {n_layers}")
        check_count_values(counts, f"counts file {self.path!r} ({self.key})")

    def layer_counts(self, context: PruningContext) -> list[float]:
        _, entry = self.entry()
        return self._counts(entry)


class OnTheFlyCounts(CountsSource):
    """Finding 1 counts computed on the dense model before pruning.

    Args:
        gamma: threshold on the mean score (docs/method.md §2).
        samples, length: that many seeded windows (or prompts) of that many tokens.
        dataset, files: the text (None: the calibration set and its files).
        seed: which samples are drawn.
        batch_size: sequences per forward/backward. Cost: samples/batch_size scoring passes.
    """

    def __init__(
        self, gamma: float = 2e-5, samples: int = 64, length: int = 256, dataset: str | None = None,
        files: str | list[str] | None = None, seed: int = 0, batch_size: int = 4,
    ) -> None:
        if gamma < 0 or samples < 1 or length < 2 or batch_size < 1:
            raise ValueError(f"OnTheFlyCounts needs gamma >= 0, samples >= 1, length >= 2, batch_size >= 1; got {gamma}, {samples}, {length}, {batch_size}")
        self.gamma, self.samples, self.length = gamma, samples, length
        self.dataset, self.files, self.seed, self.batch_size = dataset, files, seed, batch_size

    def check(self, model_name: str, n_layers: int) -> None:
        """Its own text files, before any model loads (the calibration set's are checked as the batch is built)."""
        if self.dataset and self.files:
            check_files(self.dataset, self.files)

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """A Finding 1 pass on the dense model: its sums (one fp32 value per scored parameter) and the
        scoring of `batch_size` sequences of `length` tokens, before pruning starts."""
        return (
            Footprint()
            .add("allocation counts", "Finding 1 sums (fp32)", plan.row_state())
            .add_all("allocation counts", plan.scoring_pass(min(self.samples, self.batch_size), self.length, "max_logit"))
            .feeds("pruning.allocation.init_args.counts.init_args.length", self.length, "it")
        )

    def layer_counts(self, context: PruningContext) -> list[float]:
        from lit_activation.data.samples import sample_inputs

        dataset = self.dataset or context.calibration_dataset
        files = self.files if self.dataset else (self.files or context.calibration_files)
        rows = sample_inputs(dataset, self.samples, context.tokenizer, self.seed, self.length, self.length, files)
        return activation_layer_counts(context.model, rows, self.gamma, self.batch_size, context.rows, context.shards)
