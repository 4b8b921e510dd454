"""Peak memory of a job's tensors, measured by running the real code on fake tensors.

Activation memory depends on the architecture's every op (attention kernels, norms, rotary
tables), on the batch and on the length. Rather than a formula per architecture, the planner runs
the very code of a job (one scoring pass, one Wanda block, one evaluation forward) on
FakeTensorMode tensors: they have shapes and dtypes but no data, so a 70B model at full length
costs nothing. `LiveBytes` records, op by op, the bytes of every tensor storage created and
still alive, and keeps the peak. Weights are counted apart (they exist before the pass starts).

FakeTensorMode is torch's own fake-tensor machinery (what torch.compile and torch.export use);
transformers skips its data-dependent checks for fake tensors, so models run unchanged.
"""

from __future__ import annotations

import copy
import functools
import weakref
from collections.abc import Callable, Iterable
from dataclasses import replace

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from transformers import PretrainedConfig

from lit_activation.engine.scores import scoring_pass
from lit_activation.engine.settings import EngineSettings
from lit_activation.engine.targets import sequence_nll
from lit_activation.engine.tiling import tile_rows
from lit_activation.models.architectures import fake_model
from lit_activation.models.layers import scored_modules, text_config, weight_shape


class LiveBytes(TorchDispatchMode):
    """Bytes of tensor storages created inside this mode and still alive: now and at the peak.

    A storage is counted once, however many views of it exist, and released when its last
    reference goes (torch keeps one Python object per storage, so a weak reference to it dies
    exactly then). `fake` says what is counted: the fake tensors of a simulation, or the real
    tensors of a measurement. Never both: code measured for real may itself simulate (a plan's
    check builds a fake model), and a fake tensor holds no memory.
    """

    def __init__(self, existing: Iterable[torch.Tensor] = (), *, fake: bool) -> None:
        super().__init__()
        self.fake = fake
        self.live = self.peak = 0
        self._alive: dict[int, weakref.ref | None] = {}
        self.exclude(existing)

    def exclude(self, tensors: Iterable[torch.Tensor]) -> None:
        """Never count these tensors' storages (weights and inputs, which exist before: an op's view of them is no new memory)."""
        for tensor in tensors:
            self._alive.setdefault(id(tensor.untyped_storage()), None)

    def _track(self, tensor: object) -> None:
        if not isinstance(tensor, torch.Tensor) or isinstance(tensor, FakeTensor) != self.fake:
            return
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._alive:
            return
        size = storage.nbytes()

        def released(_: weakref.ref, size: int = size, key: int = key) -> None:
            self.live -= size
            self._alive.pop(key, None)

        self._alive[key] = weakref.ref(storage, released)
        self.live += size
        self.peak = max(self.peak, self.live)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            self._track(tensor)
        return out


def cached(simulation: Callable[..., int]) -> Callable[..., int]:
    """Remember a simulation's result per (architecture, arguments): a process plans the same job
    again and again (every run checks its plan), and the answer cannot change."""
    results: dict[tuple, int] = {}

    @functools.wraps(simulation)
    def wrapper(config: PretrainedConfig, *args: object) -> int:
        key = (type(config).__name__, config.to_json_string(), getattr(config, "_attn_implementation", None), *args)
        if key not in results:
            results[key] = simulation(config, *args)
        return results[key]

    return wrapper


def peak_bytes(run: Callable[[], object], mode: FakeTensorMode, existing: Iterable[torch.Tensor]) -> int:
    """Peak of newly allocated live tensor bytes while `run()` executes in fake mode `mode`."""
    tracker = LiveBytes(existing, fake=True)
    with mode, tracker:
        run()
    return tracker.peak


def _state(model: torch.nn.Module, *inputs: torch.Tensor) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers(), *inputs]


@cached
def scoring_peak(
    config: PretrainedConfig, dtype: torch.dtype, settings: EngineSettings, rows: int, length: int, tile_bytes: float, split: bool = False,
) -> int:
    """Peak bytes (beyond the weights) of one scoring pass over `rows` sequences of `length` tokens.

    Simulated with padding (the masked copies) and D at the last position. The `loss` target adds
    its checkpointed head chunks (one tile budget) on top, counted by the caller. Split products
    (`split`) are simulated as a CPU runs them, with fp32 parts: an upper bound of a GPU's bf16 ones.
    """
    mode = FakeTensorMode()
    model = fake_model(config, dtype, mode)
    modules = scored_modules(model)
    with mode:
        ids = torch.zeros((rows, length), dtype=torch.long)
        mask = torch.ones_like(ids)
    d_target = "max_logit" if settings.target == "loss" else settings.target
    # The tile loop holds one tile at a time: scoring one tile's rows per module peaks the same,
    # and spares simulating thousands of identical tiles of a large model.
    one_tile = {}
    for name, m in modules.items():
        stored_rows, cols = weight_shape(m)
        one_tile[name] = (0, min(stored_rows, tile_rows(tile_bytes, rows * cols * 4)))
    # fused=False: the plain tile is counted, an upper bound of the fused kernel (which holds none);
    # fused_linear=False: the plain products' temporaries bound the kernel's (its output only)
    simulated = replace(settings, target=d_target, tile_mb=tile_bytes / 2**20, rows=one_tile, fused=False, fused_linear=False)
    run = lambda: scoring_pass(model, ids, mask, lambda tile: None, modules, simulated, True, split)  # noqa: E731
    return peak_bytes(run, mode, _state(model, ids, mask))


def one_block_config(config: PretrainedConfig) -> PretrainedConfig:
    """The same architecture with a single decoder layer: every block peaks alike."""
    config = copy.deepcopy(config)
    text = text_config(config)
    text.num_hidden_layers = 1
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:1]
    return config


@cached
def evaluation_peak(config: PretrainedConfig, dtype: torch.dtype, rows: int, seqlen: int, chunk_bytes: float) -> int:
    """Peak bytes (beyond the weights) of one perplexity batch: a forward without gradients and the
    token NLLs a chunk of positions at a time (ActivationModule.validation_step)."""
    mode = FakeTensorMode()
    model = fake_model(config, dtype, mode)
    with mode:
        ids = torch.zeros((rows, seqlen), dtype=torch.long)
    return peak_bytes(lambda: sequence_nll(model, ids, chunk_bytes), mode, _state(model, ids))


@cached
def logits_peak(config: PretrainedConfig, dtype: torch.dtype, rows: int, length: int, every_position: bool) -> int:
    """Peak bytes (beyond the weights) of a forward without gradients whose logits are read: at every
    position with a log-softmax over the vocabulary (lm-evaluation-harness's log-likelihoods), or at
    the last position only (`every_position` False: the head sees one hidden state per row)."""
    mode = FakeTensorMode()
    model = fake_model(config, dtype, mode)
    with mode:
        ids = torch.zeros((rows, length), dtype=torch.long)

    def run() -> None:
        with torch.no_grad():
            if every_position:
                torch.nn.functional.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
            else:
                model(input_ids=ids, logits_to_keep=1)

    return peak_bytes(run, mode, _state(model, ids))
