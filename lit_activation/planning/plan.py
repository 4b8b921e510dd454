"""The memory plan: a run's predicted peak per device, phase by phase, before any weight is loaded.

A run's parts say what they add, each in one method, `memory_needs(plan: PlanContext) -> Footprint`:
the data module (the model's passes over its batches) and each callback (its state, its own passes).
The planner adds the weights to every phase and names no part's class; a part without the method
is listed as "not counted". The plan's peak is its largest phase. `lit-activation plan` prints it,
and every real run checks it before loading the model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from transformers import PretrainedConfig
from transformers.pytorch_utils import Conv1D

from lit_activation.distributed.sharding import replicated_layout_warning, shard_group_size
from lit_activation.engine.settings import EngineSettings
from lit_activation.engine.tiling import default_tile_mb
from lit_activation.models.architectures import check_scorable, context_length, fake_model, model_config
from lit_activation.models.layers import decoder_layers, num_layers_of, scored_modules, text_config, weight_shape
from lit_activation.models.loading import resolve_dtype
from lit_activation.planning import simulate
from lit_activation.planning.memory import GB, MEMORY_LIMIT_ENV, process_memory

CUDA_CONTEXT = 0.5 * GB  # CUDA context and kernels: outside torch's allocator, about this much per GPU


@dataclass(frozen=True)
class Layout:
    """Where a run executes: the device type, devices per node, nodes, and how the weights are split."""

    device_type: str = "cpu"
    devices: int = 1  # per node
    nodes: int = 1
    sharded: bool = False  # FSDP2 (ModelParallelStrategy): weights and per-parameter state split over a shard group
    shard_group: int | None = None  # ranks that split each weight (tensor_parallel_size; None: `devices`)

    @property
    def shards(self) -> int:
        """How many ranks each weight is split over (1 unless sharded)."""
        return (self.shard_group or self.devices) if self.sharded else 1


@dataclass
class Footprint:
    """What one part of a run adds, phase by phase, and the longest sequences it feeds the model.

    `device`: bytes on each device beyond the weights; `host`: bytes of host RAM per rank (on a
    CPU run the same memory as the device's). `sequences`: what -> (tokens, the option that sets it).
    """

    device: dict[str, dict[str, int]] = field(default_factory=dict)
    host: dict[str, dict[str, int]] = field(default_factory=dict)
    sequences: dict[str, tuple[int, str]] = field(default_factory=dict)
    not_counted: list[str] = field(default_factory=list)  # what the part allocates but cannot state yet, and why

    def add(self, phase: str, item: str, nbytes: int, on_host: bool = False) -> Footprint:
        """Add `nbytes` to `item` of `phase` (on the device, or in host RAM); returns self."""
        items = (self.host if on_host else self.device).setdefault(phase, {})
        items[item] = items.get(item, 0) + int(nbytes)
        return self

    def add_all(self, phase: str, items: Mapping[str, int]) -> Footprint:
        """Add several device items to `phase`; returns self."""
        for item, nbytes in items.items():
            self.add(phase, item, nbytes)
        return self

    def feeds(self, what: str, tokens: int, option: str) -> Footprint:
        """Record a sequence of `tokens` fed to the model, set by `option`; returns self."""
        self.sequences[what] = (int(tokens), option)
        return self

    def merge(self, other: Footprint) -> Footprint:
        """Everything `other` adds, added to this footprint; returns self."""
        for on_host, phases in ((False, other.device), (True, other.host)):
            for phase, items in phases.items():
                for item, nbytes in items.items():
                    self.add(phase, item, nbytes, on_host)
        self.sequences.update(other.sequences)
        self.not_counted += other.not_counted
        return self

    def phases(self) -> list[str]:
        """Every phase named, in the order the parts named them."""
        return list(dict.fromkeys([*self.device, *self.host]))


@dataclass(frozen=True)
class Parameters:
    """Parameter counts of an architecture, from a fake-tensor model."""

    total: int  # every parameter (tied ones once)
    scored: int  # the scored weights inside the decoder blocks (linears; routers and experts in a mixture of experts)
    block: int  # the largest decoder block's
    root: int  # the rest: embeddings, head, final norm
    largest: int  # the largest single tensor
    largest_scored: int  # the largest scored weight (one expert's slice of a fused tensor)
    conv1d: int  # scored parameters in Conv1D modules (GPT-2), whose rows a sharded rank keeps whole


_PARAMETERS: dict[tuple, Parameters] = {}


def parameters(config: PretrainedConfig, dtype: torch.dtype) -> Parameters:
    """The architecture's parameter counts, from a fake-tensor model (once per config and dtype in a process)."""
    key = (type(config).__name__, config.to_json_string(), dtype)
    if key not in _PARAMETERS:
        model = fake_model(config, dtype, simulate.FakeTensorMode())
        params = list({id(p): p for p in model.parameters()}.values())
        total = sum(p.numel() for p in params)
        sizes = [(weight_shape(m).numel(), m) for m in scored_modules(model).values()]
        blocks = [sum(p.numel() for p in b.parameters()) for b in decoder_layers(model)[1]]
        _PARAMETERS[key] = Parameters(
            total=total, scored=sum(n for n, _ in sizes), block=max(blocks), root=total - sum(blocks),
            largest=max(p.numel() for p in params), largest_scored=max(n for n, _ in sizes),
            conv1d=sum(n for n, m in sizes if isinstance(m, Conv1D)),
        )
    return _PARAMETERS[key]


@dataclass(frozen=True)
class PlanContext:
    """What a part of a run may read to state its memory: the architecture, the dtypes, the layout,
    the run's data module, and simulations of the passes a part runs (planning/simulate.py)."""

    config: PretrainedConfig
    dtype: torch.dtype  # the weights' stored dtype
    engine: EngineSettings = field(default_factory=EngineSettings)
    layout: Layout = field(default_factory=Layout)
    datamodule: Any = None  # the run's data module (a callback whose state follows the data reads it)
    simulate: bool = True  # False: passes count 0 bytes (the sequences alone, checked before any pass is simulated)

    @functools.cached_property
    def params(self) -> Parameters:
        return parameters(self.config, self.dtype)

    @property
    def n_layers(self) -> int:
        return num_layers_of(self.config)

    @property
    def shards(self) -> int:
        return self.layout.shards

    @property
    def tile_bytes(self) -> int:
        """The engine's budget for one tile of per-sample scores."""
        return int((self.engine.tile_mb or default_tile_mb(self.layout.device_type)) * 2**20)

    def row_state(self, bytes_per_value: int = 4, whole_conv1d: bool = False) -> int:
        """A per-parameter state of the scored weights on one rank: a sharded rank keeps its own rows
        (1/N), and with `whole_conv1d` every row of a Conv1D (which is pruned on its gathered weight)."""
        p = self.params
        if whole_conv1d:
            return (p.scored - p.conv1d) * bytes_per_value // self.shards + p.conv1d * bytes_per_value
        return p.scored * bytes_per_value // self.shards

    def peak(self, simulation: Callable[..., int], *args: object) -> int:
        """simulation(config, dtype, *args): the peak of a pass run on fake tensors (planning/simulate.py)."""
        return simulation(self.config, self.dtype, *args) if self.simulate else 0

    def scoring_pass(self, rows: int, length: int, target: str | None = None) -> dict[str, int]:
        """The items of one scoring pass over `rows` sequences of `length` tokens (`target`: the
        engine's unless given): activations and one tile, and the loss target's head chunks."""
        target = target or self.engine.target
        settings = replace(self.engine, rows=None, target="max_logit" if target == "loss" else target)
        split = self.engine.split_products(self.layout.device_type)
        items = {"activations + one tile": self.peak(simulate.scoring_peak, settings, rows, length, self.tile_bytes, split)}
        if target == "loss":  # a chunk of positions' fp32 logits and their log-softmax, each within one tile
            vocab = text_config(self.config).vocab_size
            items["loss head chunks"] = 2 * min(self.tile_bytes, rows * (length - 1) * vocab * 4)
        return items

    def evaluation_pass(self, rows: int, seqlen: int) -> dict[str, int]:
        """The items of one perplexity batch: a forward and the token NLLs a chunk at a time."""
        return {"forward + NLL chunks": self.peak(simulate.evaluation_peak, rows, seqlen, self.tile_bytes)}


@dataclass(frozen=True)
class ScoringPass:
    """A part that runs scoring passes over batches of `rows` sequences of up to `length` tokens
    (`longest`: the longest real input once the data are loaded): what a data module states."""

    rows: int
    length: int
    longest: int | None = None
    option: str = "data.init_args.max_length (prompts) or data.init_args.window (corpus windows)"

    def memory_needs(self, plan: PlanContext) -> Footprint:
        needs = Footprint().add_all("scoring", plan.scoring_pass(self.rows, self.length))
        if self.longest is not None:
            return needs.feeds("the longest input", self.longest, self.option)
        return needs.feeds("data.init_args.max_length / window", self.length, self.option)


@dataclass(frozen=True)
class EvaluationPass:
    """A part that evaluates perplexity in batches of `rows` chunks of `seqlen` tokens."""

    rows: int
    seqlen: int

    def memory_needs(self, plan: PlanContext) -> Footprint:
        return Footprint().add_all("evaluation", plan.evaluation_pass(self.rows, self.seqlen)).feeds("data.init_args.seqlen", self.seqlen, "it")


@dataclass
class Job:
    """What a run does, as far as memory is concerned: the model, how it is stored and computed,
    where it runs, and its parts (the data module and the callbacks), each stating its needs."""

    model: str
    dtype: str = "float32"
    engine: EngineSettings = field(default_factory=EngineSettings)
    layout: Layout = field(default_factory=Layout)
    datamodule: Any = None
    callbacks: list = field(default_factory=list)

    def parts(self) -> list:
        """The data module and the callbacks, Lightning's own callbacks left out (they hold no tensors)."""
        return [p for p in [self.datamodule, *self.callbacks] if p is not None and not type(p).__module__.startswith("lightning.")]


@dataclass
class MemoryPlan:
    """Predicted bytes per phase and item, on one device (each device alike), and where it must fit."""

    job: Job
    phases: dict[str, dict[str, int]] = field(default_factory=dict)
    host: dict[str, dict[str, int]] = field(default_factory=dict)  # host RAM per rank beside a GPU job, per phase
    available: int | None = None
    not_counted: list[str] = field(default_factory=list)  # parts that do not state their memory
    sequences: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def shards(self) -> int:
        return self.job.layout.shards

    def peak(self) -> tuple[str, int]:
        """(phase, bytes) of the largest phase."""
        name = max(self.phases, key=lambda p: sum(self.phases[p].values()))
        return name, sum(self.phases[name].values())

    def host_peak(self) -> int:
        """Host RAM per rank at its largest phase (loading included)."""
        return max((sum(items.values()) for items in self.host.values()), default=0)

    def fits(self) -> bool:
        return self.available is None or self.peak()[1] <= self.available

    def table(self) -> str:
        """The plan as aligned text, one block per phase, the peak marked."""
        job, layout = self.job, self.job.layout
        nodes = f"{layout.nodes} nodes × " if layout.nodes > 1 else ""
        where = f"{nodes}{layout.devices} × {layout.device_type}" + (f" (sharded over groups of {self.shards})" if layout.sharded else "")
        lines = [f"Memory plan: {job.model}, weights {job.dtype}, compute {job.engine.compute_dtype}, per device of {where}"]
        warning = replicated_layout_warning(layout.devices, self.shards) if layout.sharded else None
        if warning:
            lines.append(f"  warning: {warning}")
        peak_phase, peak = self.peak()
        for phase, items in self.phases.items():
            mark = "  <- peak" if phase == peak_phase else ""
            lines.append(f"  {phase}: {sum(items.values()) / GB:.2f} GB{mark}")
            lines += [f"    {name:<34} {value / GB:8.2f} GB" for name, value in items.items()]
        if self.host:
            per_rank = self.host_peak()
            parts = ", ".join(f"{phase} {sum(items.values()) / GB:.2f} GB" for phase, items in self.host.items())
            per_node = layout.devices * per_rank
            lines.append(f"  host RAM per rank: {per_rank / GB:.2f} GB at most ({parts}); per node of {layout.devices}: {per_node / GB:.2f} GB")
        if self.not_counted:
            lines += [f"  not counted: {what}" for what in self.not_counted]
        if self.available is not None:
            verdict = "fits" if self.fits() else "DOES NOT FIT"
            lines.append(f"  available per device: {self.available / GB:.2f} GB -> {verdict} (peak {peak / GB:.2f} GB)")
        return "\n".join(lines)


def weights_items(plan: PlanContext) -> dict[str, int]:
    """What every phase holds before its own work: the weights (a rank's shard), FSDP's gathered
    blocks and root, and the runtime (this process on a CPU, the CUDA context on a GPU)."""
    p, shards, compute = plan.params, plan.shards, plan.engine.dtype
    items = {"weights": p.total * plan.dtype.itemsize // shards}
    if plan.layout.sharded:  # FSDP2 gathers one block (and prefetches the next) in the compute dtype; the root
        items["gathered blocks (2, unsharded)"] = 2 * p.block * compute.itemsize  # unit (embeddings, head)
        items["gathered root (embeddings, head)"] = p.root * compute.itemsize  # stays gathered all pass long
    if plan.layout.device_type == "cpu":
        items["runtime (this process now)"] = process_memory()
    else:
        items["CUDA context"] = int(CUDA_CONTEXT)
    return items


def plan_memory(job: Job, config: PretrainedConfig, available: int | None = None, simulate: bool = True) -> MemoryPlan:
    """Predict every phase's peak per device for `job` on the architecture `config`: the weights,
    and what each part of the job says it adds (`memory_needs`). `simulate=False`: the passes count
    nothing (the parts' sequences and fixed items only)."""
    context = PlanContext(config, resolve_dtype(job.dtype), job.engine, job.layout, job.datamodule, simulate)
    needs, not_counted = Footprint(), []
    for part in job.parts():
        if hasattr(part, "memory_needs"):
            needs.merge(part.memory_needs(context))
        else:
            not_counted.append(f"{type(part).__name__} (it has no memory_needs)")
    plan = MemoryPlan(job, available=available, not_counted=not_counted + needs.not_counted, sequences=needs.sequences)
    weights = weights_items(context)
    on_cpu = job.layout.device_type == "cpu"
    for phase in needs.phases():
        plan.phases[phase] = {**weights, **needs.device.get(phase, {}), **(needs.host.get(phase, {}) if on_cpu else {})}
    if not plan.phases:
        plan.phases["weights only"] = weights
    if not on_cpu:  # the weights pass through host memory on their way to the device
        p, shards = context.params, context.shards
        plan.host["loading"] = {"weights while loading": p.total * context.dtype.itemsize // shards + (p.largest * 4 // shards if job.layout.sharded else 0)}
        plan.host.update({phase: items for phase, items in needs.host.items() if items})
    return plan


def suggestions(plan: MemoryPlan) -> list[str]:
    """What would make the largest phase fit, from the plan's own items."""
    phase, peak = plan.peak()
    items, job, out = plan.phases[phase], plan.job, []
    if "Finding 1 sums (fp32)" in items:
        out.append("keep the Finding 1 sums in host RAM (callbacks: ActivationCounts state_device: cpu)")
    if "activations + one tile" in items and not job.engine.checkpoint_blocks:
        out.append("recomputed blocks (model.engine.checkpoint_blocks: true; about a third more compute)")
    if any(k.startswith(("activations", "calibration", "forward")) for k in items):
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


def layout_of(trainer) -> Layout:  # noqa: ANN001 - a Lightning Trainer
    """The layout a configured Trainer will run: its device type and count, nodes, and shard group."""
    strategy = trainer.strategy
    sharded = type(strategy).__name__ == "ModelParallelStrategy"
    return Layout(
        device_type=strategy.root_device.type, devices=trainer.num_devices, nodes=trainer.num_nodes, sharded=sharded,
        shard_group=shard_group_of(strategy) if sharded else None,
    )


def job_of(module, datamodule, callbacks: Iterable, trainer) -> Job:  # noqa: ANN001 - Lightning objects
    """The Job that a configured run (ActivationModule, data module, callbacks, Trainer) will do."""
    hp = module.hparams
    return Job(model=hp.model, dtype=hp.dtype, engine=module.engine, layout=layout_of(trainer), datamodule=datamodule, callbacks=list(callbacks))


def shard_group_of(strategy) -> int | None:  # noqa: ANN001 - a ModelParallelStrategy
    """The strategy's tensor_parallel size (the shard group), None while it is Lightning's 'auto'
    (then every device of a node: the plan uses `devices`)."""
    mesh = getattr(strategy, "_device_mesh", None)
    if mesh is not None:
        return shard_group_size(mesh)
    size = getattr(strategy, "_tensor_parallel_size", "auto")
    return None if size == "auto" else int(size)


def checked_job(module, datamodule, callbacks: Iterable, trainer) -> tuple[Job, PretrainedConfig]:  # noqa: ANN001
    """The Job of a configured run and its model's config, its sequences checked against the model's positions."""
    hp = module.hparams
    job, config = job_of(module, datamodule, callbacks, trainer), model_config(hp.model, hp.trust_remote_code)
    check_scorable(config, hp.model, hp.trust_remote_code)
    check_context(job, config)
    return job, config


def unread_inputs_note(reason: BaseException | str) -> str:
    """The line a plan ends with when its data (or a callback's files) could not be read before it,
    e.g. offline for a hub model: inputs are then planned as long as their options allow (an upper
    bound), and what only the files can tell is listed as not counted. The reason is given whole, last,
    so that a long one is never cut inside its own parentheses."""
    lines = str(reason).strip().splitlines()
    why = lines[0] if lines else type(reason).__name__
    return f"  note: the inputs were not read, so they are planned as long as their options allow (an upper bound). Why: {why}"


def sequence_lengths(job: Job, config: PretrainedConfig) -> dict[str, tuple[int, str]]:
    """The longest sequence each part of `job` feeds the model: {what: (tokens, the option that sets it)}."""
    return plan_memory(job, config, simulate=False).sequences


def check_context(job: Job, config: PretrainedConfig) -> None:
    """Refuse, before any weight loads, a sequence longer than the model was built for: learned
    positions (GPT-2) would fail mid-run, rotary ones would score positions never trained."""
    limit = context_length(config)
    if limit is None:
        return
    for name, (n, option) in sequence_lengths(job, config).items():
        if n > limit:
            raise ValueError(f"{name} is {n} tokens; {job.model!r} takes at most {limit} positions (max_position_embeddings): lower {option} to <= {limit}")
