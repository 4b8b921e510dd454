"""A model's architecture without its weights: its config, and a fake-tensor model built from it.

The memory planner needs layer counts and shapes before any weight is loaded. `model_config`
reads them from the same places `load_causal_lm` reads weights (embedded default, local dir,
.gguf, hub id), and knows the published configs of the paper's models, so a 70B plan needs no
download and no network.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, MixtralConfig, OlmoeConfig, PretrainedConfig, PreTrainedModel, Qwen3MoeConfig

from lit_activation.models import loading
from lit_activation.models.experts import is_moe, plan_experts
from lit_activation.models.files import check_config
from lit_activation.models.layers import linear_modules, scored_modules, text_config
from lit_activation.models.tiny import tiny_config

# Published config.json values (Hugging Face model cards), enough to rebuild each architecture.
_LLAMA_2 = dict(max_position_embeddings=4096, rms_norm_eps=1e-5, vocab_size=32000, tie_word_embeddings=False)
PUBLISHED: dict[str, dict] = {
    "meta-llama/Llama-2-7b-hf": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, **_LLAMA_2
    ),
    "meta-llama/Llama-2-13b-hf": dict(
        hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=40, **_LLAMA_2
    ),
    "meta-llama/Llama-2-70b-hf": dict(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8, **_LLAMA_2
    ),
    "meta-llama/Meta-Llama-3-8B": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0, vocab_size=128256, tie_word_embeddings=False,
    ),
    "huggyllama/llama-7b": dict(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        max_position_embeddings=2048, rms_norm_eps=1e-6, vocab_size=32000, tie_word_embeddings=False,
    ),
}
# Mixtures of experts (their config.json on the hub), planned by the same code: fused experts, routers.
PUBLISHED_MOE: dict[str, tuple[type[PretrainedConfig], dict]] = {
    "mistralai/Mixtral-8x7B-v0.1": (MixtralConfig, dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=32768, rope_theta=1e6, vocab_size=32000, tie_word_embeddings=False,
    )),
    "Qwen/Qwen3-30B-A3B": (Qwen3MoeConfig, dict(
        hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4,
        head_dim=128, num_experts=128, num_experts_per_tok=8, norm_topk_prob=True, max_position_embeddings=40960, rope_theta=1e6,
        vocab_size=151936, tie_word_embeddings=False,
    )),
    "allenai/OLMoE-1B-7B-0924": (OlmoeConfig, dict(
        hidden_size=2048, intermediate_size=1024, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
        num_experts=64, num_experts_per_tok=8, max_position_embeddings=4096, vocab_size=50304, tie_word_embeddings=False,
    )),
}
ALIASES = {
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-v0.1",
    "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B",
    "olmoe-1b-7b": "allenai/OLMoE-1B-7B-0924",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "llama-2-13b": "meta-llama/Llama-2-13b-hf",
    "llama-2-70b": "meta-llama/Llama-2-70b-hf",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B",
    "llama-7b": "huggyllama/llama-7b",
}


def published_config(name: str) -> PretrainedConfig | None:
    """The published config of a known model id or alias (Llama, or a mixture of experts), else None."""
    name = ALIASES.get(name, name)
    if name in PUBLISHED_MOE:
        kind, values = PUBLISHED_MOE[name]
        return kind(**values)
    values = PUBLISHED.get(name)
    return None if values is None else LlamaConfig(**values)


def model_config(name_or_path: str, trust_remote_code: bool = False) -> PretrainedConfig:
    """The model's config, read without loading weights (published values for known hub ids offline).

    Read once per process (a run's checks, plan and callbacks each ask, a comparison once per run);
    each caller gets its own copy to change.
    """
    return copy.deepcopy(_read_config(name_or_path, trust_remote_code))


@functools.lru_cache(maxsize=16)
def _read_config(name_or_path: str, trust_remote_code: bool) -> PretrainedConfig:
    if name_or_path.startswith(loading.TINY_PREFIX):
        return tiny_config(name_or_path[len(loading.TINY_PREFIX) :])
    known = published_config(name_or_path)
    if known is not None and not Path(name_or_path).exists():
        return known
    gguf = loading.gguf_file(name_or_path)
    if gguf is not None:
        file, key = gguf
        converted = loading.cache_dir() / key if key else None  # the embedded default's converted copy, when made
        if converted is not None and (converted / "config.json").is_file():
            return AutoConfig.from_pretrained(converted)
        return AutoConfig.from_pretrained(file.parent, gguf_file=file.name)
    path = Path(name_or_path).expanduser()
    loading.check_path(name_or_path)
    if path.is_dir():
        check_config(path)
    try:
        return AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except OSError as err:
        if path.is_dir():
            raise loading.unloadable(name_or_path, str(path), "config.json", err) from err
        reason = loading.hub_problem(name_or_path, err) or f"the config of {name_or_path!r} cannot be read ({loading.first_line(err)})"
        raise ValueError(f"{reason}; the published configs need no network: {sorted(ALIASES)}") from err


def fake_model(config: PretrainedConfig, dtype: torch.dtype, mode, trust_remote_code: bool = False) -> PreTrainedModel:
    """The architecture with fake weights (no memory, no data) inside FakeTensorMode `mode`."""
    config = copy.deepcopy(config)  # from_config may set attributes: never touch the caller's
    with mode:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    plan_experts(model)  # a mixture of experts: a forward fake tensors can run
    return model.eval().requires_grad_(False)


_SCORABLE: dict[tuple[str, bool], bool] = {}  # (config, trust) -> is a mixture of experts; a process checks one model often


def _scorable(config: PretrainedConfig, trust_remote_code: bool) -> bool:
    """Whether the architecture is a mixture of experts, once its scored units are known (a fake-tensor
    model: no weights, no memory); raises ValueError for weights the engine cannot score."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    key = (config.to_json_string(), trust_remote_code)
    if key not in _SCORABLE:
        model = fake_model(config, torch.float32, FakeTensorMode(), trust_remote_code)
        scored_modules(model)
        _SCORABLE[key] = is_moe(model)
    return _SCORABLE[key]


def is_mixture_of_experts(config: PretrainedConfig, trust_remote_code: bool = False) -> bool:
    """Whether the architecture has fused experts."""
    return _scorable(config, trust_remote_code)


def check_scorable(config: PretrainedConfig, name: str, trust_remote_code: bool = False) -> None:
    """Refuse, before any weight loads, an architecture with weights the engine cannot score (an
    experts module of an unknown layout): one line naming it (models.layers.block_scored)."""
    _scorable(config, trust_remote_code)


def check_prunable(config: PretrainedConfig, name: str, trust_remote_code: bool = False, removes_experts: bool = False) -> None:
    """Refuse, before any work, whole experts removed from a dense model (the methods that cannot prune
    inside experts are refused by pruning.prune.check_experts_prunable)."""
    if removes_experts and not is_mixture_of_experts(config, trust_remote_code):
        raise ValueError(f"{name} has no experts to remove (a dense model): pruning.experts.ratio applies to a mixture of experts; accepted here: 0")


def context_length(config: PretrainedConfig) -> int | None:
    """The most positions the model takes (None when the config does not say): max_position_embeddings
    (GPT-2's n_positions), or what a rotary scaling stretches it to, factor × the original length,
    where a config keeps the original length there (linear or YaRN scaling added to a 4k model)."""
    text = text_config(config)
    value = getattr(text, "max_position_embeddings", None)
    if not isinstance(value, int) or value <= 0:
        return None
    rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None)
    factor = rope.get("factor") if isinstance(rope, dict) else None
    if isinstance(factor, (int, float)) and factor > 1:
        original = rope.get("original_max_position_embeddings") or value
        return max(value, int(factor * original))
    return value


def input_widths(config: PretrainedConfig, trust_remote_code: bool = False) -> dict[str, int]:
    """Each scored module's input width (a Linear's in_features, a Conv1D's rows), from a fake model."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = fake_model(config, torch.float32, FakeTensorMode(), trust_remote_code)
    return {name: m.in_features if isinstance(m, torch.nn.Linear) else m.weight.shape[0] for name, m in linear_modules(model).items()}

