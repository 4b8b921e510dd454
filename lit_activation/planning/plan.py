"""Memory plan: the predicted peak of a job on each device, before any weight is loaded.

A job runs in phases: scoring (counts, LLMDcos, STS), pruning (allocation, then Wanda block by
block) and evaluation (perplexity). Each phase's peak is the weights plus what it adds:
accumulators, one tile, activations (simulated on fake tensors, lit_activation.planning.simulate), the
calibration batch. The plan is the largest phase. `lit-activation plan --config X` prints it;
every real run checks it first and stops, before loading the model, if it cannot fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from transformers import PretrainedConfig
from transformers.pytorch_utils import Conv1D

from lit_activation.distributed.sharding import replicated_layout_warning, shard_group_size
from lit_activation.engine.settings import EngineSettings
from lit_activation.engine.tiling import default_tile_mb
from lit_activation.models.architectures import context_length, fake_model
from lit_activation.models.layers import decoder_layers, linear_modules, num_layers_of
from lit_activation.models.loading import resolve_dtype
from lit_activation.planning import simulate
from lit_activation.planning.memory import GB, MEMORY_LIMIT_ENV, process_memory

CUDA_CONTEXT = 0.5 * GB  # CUDA context and kernels: outside torch's allocator, about this much per GPU


@dataclass
class Scoring:
    """A predict job: `rows` sequences of up to `length` tokens per batch."""

    rows: int
    length: int
    longest: int | None = None  # the longest input row, once the data are loaded (length is its cap)
    accumulator: bool = False  # Finding 1 sums (one fp32 value per scored parameter)
    accumulator_on_host: bool = False
    tables_bytes: int = 0  # LLMDcos / STS per-group Gram tables


@dataclass
class Pruning:
    """A Wanda job: the calibration batch and how the layer sparsities are found."""

    samples: int
    seqlen: int
    batch_size: int
    activation_counts: tuple[int, int] | None = None  # on-the-fly counts: (samples, length)
    owl: bool = False
    metric_state: bool = False  # the metric keeps one fp32 value per scored parameter (Taylor, GBLM)
    metric_target: str | None = None  # the metric's scoring passes over the calibration batch use this D


@dataclass
class Evaluation:
    """Perplexity batches of `rows` chunks of `seqlen` tokens."""

    rows: int
    seqlen: int


@dataclass
class Job:
    """What a run does, as far as memory is concerned."""

    model: str
    dtype: str = "float32"
    engine: EngineSettings = field(default_factory=EngineSettings)  # target, compute dtype, products, tile, recompute
    device_type: str = "cpu"
    devices: int = 1  # per node
    sharded: bool = False  # FSDP2 (ModelParallelStrategy): weights and accumulator split over a shard group
    shard_group: int | None = None  # ranks that split each weight (tensor_parallel_size; None: `devices`)
    scoring: Scoring | None = None
    pruning: Pruning | None = None
    evaluation: Evaluation | None = None


@dataclass
class MemoryPlan:
    """Predicted bytes per phase and item, on one device (each device alike), and where it must fit."""

    job: Job
    phases: dict[str, dict[str, int]] = field(default_factory=dict)
    host: dict[str, int] = field(default_factory=dict)  # items kept in host RAM beside a GPU job
    available: int | None = None

    @property
    def shards(self) -> int:
        """How many ranks each weight is split over (1 unless sharded)."""
        job = self.job
        return (job.shard_group or job.devices) if job.sharded else 1

    def peak(self) -> tuple[str, int]:
        """(phase, bytes) of the largest phase."""
        name = max(self.phases, key=lambda p: sum(self.phases[p].values()))
        return name, sum(self.phases[name].values())

    def fits(self) -> bool:
        return self.available is None or self.peak()[1] <= self.available

    def table(self) -> str:
        """The plan as aligned text, one block per phase, the peak marked."""
        job = self.job
        where = f"{job.devices} × {job.device_type}" + (f" (sharded over groups of {self.shards})" if job.sharded else "")
        lines = [f"Memory plan: {job.model}, weights {job.dtype}, compute {job.engine.compute_dtype}, per device of {where}"]
        warning = replicated_layout_warning(job.devices, self.shards) if job.sharded else None
        if warning:
            lines.append(f"  warning: {warning}")
        peak_phase, peak = self.peak()
        for phase, items in self.phases.items():
            mark = "  <- peak" if phase == peak_phase else ""
            lines.append(f"  {phase}: {sum(items.values()) / GB:.2f} GB{mark}")
            lines += [f"    {name:<34} {value / GB:8.2f} GB" for name, value in items.items()]
        if self.host:
            per_rank = max(self.host.values())
            lines.append(
                f"  host RAM per rank: {per_rank / GB:.2f} GB at most ({', '.join(f'{k} {v / GB:.2f} GB' for k, v in self.host.items())}); "
                f"per node of {job.devices}: {job.devices * per_rank / GB:.2f} GB"
            )
        if self.available is not None:
            verdict = "fits" if self.fits() else "DOES NOT FIT"
            lines.append(f"  available per device: {self.available / GB:.2f} GB -> {verdict} (peak {peak / GB:.2f} GB)")
        return "\n".join(lines)


def _params(config: PretrainedConfig, dtype: torch.dtype) -> tuple[int, int, int, int, int, int]:
    """(all parameters, scored linear parameters, largest decoder block's, the rest's: embeddings,
    head, norm; the largest single tensor's; the scored ones in Conv1D modules, GPT-2's)."""
    mode = simulate.FakeTensorMode()
    model = fake_model(config, dtype, mode)
    params = list({id(p): p for p in model.parameters()}.values())
    total = sum(p.numel() for p in params)
    modules = linear_modules(model).values()
    scored = sum(m.weight.numel() for m in modules)
    conv1d = sum(m.weight.numel() for m in modules if isinstance(m, Conv1D))
    blocks = [sum(p.numel() for p in b.parameters()) for b in decoder_layers(model)[1]]
    return total, scored, max(blocks), total - sum(blocks), max(p.numel() for p in params), conv1d


def plan_memory(job: Job, config: PretrainedConfig, available: int | None = None) -> MemoryPlan:
    """Predict every phase's peak per device for `job` on the architecture `config`."""
    dtype, engine = resolve_dtype(job.dtype), job.engine
    compute = engine.dtype
    tile = (engine.tile_mb or default_tile_mb(job.device_type)) * 2**20
    split = engine.split_products(job.device_type)
    total, scored, block, root, largest, conv1d = _params(config, dtype)
    plan = MemoryPlan(job, available=available)
    shards = plan.shards
    weights = {"weights": total * dtype.itemsize // shards}
    if job.sharded:  # FSDP2 gathers one block (and prefetches the next) in the compute dtype; the root
        weights["gathered blocks (2, unsharded)"] = 2 * block * compute.itemsize  # unit (embeddings, head)
        weights["gathered root (embeddings, head)"] = root * compute.itemsize  # stays gathered all pass long
    if job.device_type == "cpu":
        weights["runtime (this process now)"] = process_memory()
    else:
        weights["CUDA context"] = int(CUDA_CONTEXT)
    if job.device_type != "cpu":  # the weights pass through host memory on their way to the device
        plan.host["weights while loading"] = total * dtype.itemsize // shards + (largest * 4 // shards if job.sharded else 0)
    plain = replace(engine, rows=None)
    if job.scoring is not None:
        s = job.scoring
        items = dict(weights)
        state = scored * 4 // shards
        if s.accumulator and s.accumulator_on_host:
            plan.host["Finding 1 sums (fp32)"] = state
        elif s.accumulator:
            items["Finding 1 sums (fp32)"] = state
        if s.tables_bytes:
            items["LLMDcos tables"] = s.tables_bytes
        items["activations + one tile"] = simulate.scoring_peak(config, dtype, plain, s.rows, s.length, tile, split)
        if engine.target == "loss":
            items["loss head chunks"] = int(tile)
        plan.phases["scoring"] = items
    if job.pruning is not None:
        p = job.pruning
        items = dict(weights)
        items["calibration (block in/out, args)"] = simulate.wanda_peak(config, dtype, p.samples, p.seqlen, p.batch_size)
        if p.owl:
            items["OWL scores of one block (fp32)"] = block * 4
        plan.phases["pruning"] = items
        if p.metric_target is not None:
            scores = dict(weights)
            if p.metric_state:
                # a rank keeps its own rows of each Linear, every row of a Conv1D (pruned gathered)
                scores["metric state (fp32)"] = (scored - conv1d) * 4 // shards + conv1d * 4
            target = "max_logit" if p.metric_target == "loss" else p.metric_target
            scores["activations + one tile"] = simulate.scoring_peak(config, dtype, replace(plain, target=target), p.batch_size, p.seqlen, tile, split)
            if p.metric_target == "loss":
                scores["loss head chunks"] = int(tile)
            plan.phases["metric scores"] = scores
        if p.activation_counts is not None:
            n, length = p.activation_counts
            counts = dict(weights)
            counts["Finding 1 sums (fp32)"] = scored * 4 // shards
            counts["activations + one tile"] = simulate.scoring_peak(config, dtype, replace(plain, target="max_logit"), min(n, 4), length, tile, split)
            plan.phases["allocation counts"] = counts
    if job.evaluation is not None:
        e = job.evaluation
        items = dict(weights)
        items["forward + NLL chunks"] = simulate.evaluation_peak(config, dtype, e.rows, e.seqlen, tile)
        plan.phases["evaluation"] = items
    if not plan.phases:
        plan.phases["weights only"] = weights
    return plan


def suggestions(plan: MemoryPlan) -> list[str]:
    """What would make the largest phase fit, from the plan's own items."""
    phase, peak = plan.peak()
    items, job, out = plan.phases[phase], plan.job, []
    if "Finding 1 sums (fp32)" in items:
        out.append("keep the Finding 1 sums in host RAM (callbacks: ActivationCounts state_device: cpu)")
    if "activations + one tile" in items and not job.engine.checkpoint_blocks:
        out.append("recomputed blocks (model.engine.checkpoint_blocks: true; about a third more compute)")
    if any(k.startswith("activations") or k.startswith("calibration") or k.startswith("forward") for k in items):
        out.append("a smaller batch or length (data.init_args.batch_size / max_length / window; pruning batch_size or seqlen)")
    if job.dtype == "float32":
        out.append("store the weights in bfloat16 (model.dtype: bfloat16; scores stay exact fp32)")
    out.append("more devices with the sharded strategy (trainer.strategy: ModelParallelStrategy)")
    return out


def check_fits(plan: MemoryPlan) -> None:
    """Raise before any work if the plan's peak exceeds the available memory, naming numbers and remedies."""
    if plan.fits():
        return
    phase, peak = plan.peak()
    largest = sorted(plan.phases[phase].items(), key=lambda kv: -kv[1])[:3]
    parts = ", ".join(f"{k} {v / GB:.1f} GB" for k, v in largest)
    raise MemoryError(
        f"This run needs about {peak / GB:.1f} GB per device in its {phase} phase ({parts}) but "
        f"{plan.available / GB:.1f} GB are available (${MEMORY_LIMIT_ENV} overrides). It would fit with: "
        + "; or ".join(suggestions(plan))
        + ". See `lit-activation plan --config ...`."
    )


def job_from_run(module, datamodule, callbacks: Iterable, trainer) -> Job:  # noqa: ANN001 - Lightning objects
    """The Job that a configured run (ActivationModule, data module, callbacks, Trainer) will do."""
    from lit_activation.callbacks import ActivationCounts, LLMDcos, STSCorrelation, WandaPruning
    from lit_activation.data.datamodule import ActivationDataModule
    from lit_activation.data.perplexity import PerplexityDataModule

    hp = module.hparams
    sharded = type(trainer.strategy).__name__ == "ModelParallelStrategy"
    job = Job(
        model=hp.model, dtype=hp.dtype, engine=module.engine, device_type=trainer.strategy.root_device.type, devices=trainer.num_devices,
        sharded=sharded, shard_group=shard_group_of(trainer.strategy) if sharded else None,
    )
    callbacks = list(callbacks)
    if isinstance(datamodule, ActivationDataModule):
        d = datamodule.hparams
        rows = d.batch_size * datamodule.group_size
        counts = [cb for cb in callbacks if isinstance(cb, ActivationCounts)]
        loaded = [len(r) for g in datamodule.groups for r in g.rows]
        job.scoring = Scoring(rows=rows, length=max(d.max_length, d.window), longest=max(loaded, default=None), accumulator=bool(counts),
                              accumulator_on_host=any(cb.state_device == "cpu" for cb in counts))
        if any(isinstance(cb, (LLMDcos, STSCorrelation)) for cb in callbacks):
            layers = num_layers_of(model_config_of(hp))
            job.scoring.tables_bytes = d.num_samples * layers * datamodule.group_size**2 * 8
    if isinstance(datamodule, PerplexityDataModule):
        job.evaluation = Evaluation(rows=datamodule.hparams.batch_size, seqlen=datamodule.hparams.seqlen)
    for cb in callbacks:
        if isinstance(cb, WandaPruning) and cb.sparsity > 0:
            job.pruning = cb.memory_needs()
    return job


def shard_group_of(strategy) -> int | None:  # noqa: ANN001 - a ModelParallelStrategy
    """The strategy's tensor_parallel size (the shard group), None while it is Lightning's 'auto'
    (then every device of a node: the plan uses `devices`)."""
    mesh = getattr(strategy, "_device_mesh", None)
    if mesh is not None:
        return shard_group_size(mesh)
    size = getattr(strategy, "_tensor_parallel_size", "auto")
    return None if size == "auto" else int(size)


def model_config_of(hparams) -> PretrainedConfig:  # noqa: ANN001 - ActivationModule hparams
    """The architecture of the module's configured model (config only, no weights)."""
    from lit_activation.models.architectures import model_config

    return model_config(hparams.model, hparams.trust_remote_code)


def checked_job(module, datamodule, callbacks: Iterable, trainer) -> tuple[Job, PretrainedConfig]:  # noqa: ANN001
    """The Job of a configured run and its model's config, its sequences checked against the model's positions."""
    job, config = job_from_run(module, datamodule, callbacks, trainer), model_config_of(module.hparams)
    check_context(job, config)
    return job, config


def sequence_lengths(job: Job) -> dict[str, tuple[int, str]]:
    """The longest sequence each phase of `job` feeds the model: {what: (tokens, the option that sets it)}."""
    data = "data.init_args.max_length (prompts) or data.init_args.window (corpus windows)"
    lengths = {}
    if job.scoring and job.scoring.longest is not None:  # the data are loaded: what the model will be given
        lengths["the longest input"] = (job.scoring.longest, data)
    elif job.scoring:  # planned before the data: their caps
        lengths["data.init_args.max_length / window"] = (job.scoring.length, data)
    if job.pruning:
        lengths["pruning.calibration.seqlen"] = (job.pruning.seqlen, "it")
        if job.pruning.activation_counts:
            lengths["pruning.allocation.init_args.counts.init_args.length"] = (job.pruning.activation_counts[1], "it")
    if job.evaluation:
        lengths["data.init_args.seqlen"] = (job.evaluation.seqlen, "it")
    return lengths


def check_context(job: Job, config: PretrainedConfig) -> None:
    """Refuse, before any weight loads, a sequence longer than the model was built for: learned
    positions (GPT-2) would fail mid-run, rotary ones would score positions never trained."""
    limit = context_length(config)
    for name, (n, option) in sequence_lengths(job).items():
        if limit is not None and n > limit:
            raise ValueError(f"{name} is {n} tokens; {job.model!r} takes at most {limit} positions (max_position_embeddings): lower {option} to <= {limit}")
