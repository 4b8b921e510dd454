"""Tiny randomly initialised models and a character tokenizer: offline, milliseconds, for tests and smoke runs.

`load_causal_lm("tiny-llama")` (also tiny-mistral, tiny-qwen2, tiny-gemma3, tiny-gpt2, tiny-opt, and the
mixtures of experts tiny-mixtral, tiny-qwen2_moe, tiny-qwen3_moe, tiny-olmoe, tiny-gpt_oss, tiny-deepseek_v3)
builds one from a config object; no file or network is touched. The seed fixes the weights.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    DeepseekV3Config,
    Gemma3TextConfig,
    GPT2Config,
    GptOssConfig,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    OlmoeConfig,
    OPTConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)

_CHARS = string.printable  # 100 characters; ids 0..3 are special tokens
VOCAB = 4 + len(_CHARS)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII with <pad>, <eos>, <bos>, <unk>."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    vocab.update({c: 4 + i for i, c in enumerate(_CHARS)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()  # characters join back without spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )


def _configs(layers: int, hidden: int) -> dict[str, PretrainedConfig]:
    common = dict(vocab_size=VOCAB, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    llama_like = dict(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        **common,
    )
    return {
        "llama": LlamaConfig(**llama_like),
        "mistral": MistralConfig(**llama_like),
        "qwen2": Qwen2Config(**llama_like),
        "gemma3": Gemma3TextConfig(**llama_like, head_dim=hidden // 4, sliding_window=8),
        "gpt2": GPT2Config(n_embd=hidden, n_layer=layers, n_head=4, n_positions=512, **common),
        "opt": OPTConfig(
            hidden_size=hidden,
            ffn_dim=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            max_position_embeddings=512,
            word_embed_proj_dim=hidden,
            **common,
        ),
    }


def _moe_configs(layers: int, hidden: int, experts: int = 4) -> dict[str, PretrainedConfig]:
    """Mixtures of experts, top-2 of `experts`: each family's own layout (shared experts, transposed and
    interleaved gpt-oss, DeepSeek's group-limited routing with a dense first layer)."""
    common = dict(
        vocab_size=VOCAB, pad_token_id=0, eos_token_id=1, bos_token_id=2, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, num_experts_per_tok=2,
    )
    moe = dict(num_experts=experts, moe_intermediate_size=hidden + hidden // 2)
    rope = {"rope_type": "default", "rope_theta": 10000.0}  # plain rotary: the published YaRN needs a longer context
    return {
        "mixtral": MixtralConfig(**common, num_local_experts=experts),
        "qwen2_moe": Qwen2MoeConfig(**common, **moe, shared_expert_intermediate_size=2 * hidden),
        "qwen3_moe": Qwen3MoeConfig(**common, **moe),
        "olmoe": OlmoeConfig(**common, num_experts=experts),
        "gpt_oss": GptOssConfig(**common, num_local_experts=experts, head_dim=hidden // 4, rope_parameters=dict(rope)),
        "deepseek_v3": DeepseekV3Config(
            **{**common, "num_key_value_heads": 4}, n_routed_experts=experts, moe_intermediate_size=hidden + hidden // 2, n_shared_experts=1,
            kv_lora_rank=16, q_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=hidden // 4, n_group=2, topk_group=1,
            first_k_dense_replace=1, rope_parameters=dict(rope),
        ),
    }


ARCHITECTURES = tuple(_configs(2, 32))  # dense
MOE_ARCHITECTURES = tuple(_moe_configs(2, 32))


def tiny_config(arch: str = "llama", layers: int = 2, hidden: int = 32) -> PretrainedConfig:
    """The config of a tiny test model (eager attention: deterministic, supported everywhere)."""
    configs = {**_configs(layers, hidden), **_moe_configs(layers, hidden)}
    if arch not in configs:
        raise ValueError(f"Unknown tiny architecture {arch!r}; accepted: {list(configs)}")
    config = configs[arch]
    config._attn_implementation = "eager"
    return config


def tiny_model(arch: str = "llama", layers: int = 2, hidden: int = 32, seed: int = 0) -> PreTrainedModel:
    """A frozen, eval-mode, randomly initialised causal LM of the given architecture (fp32)."""
    return random_model(tiny_config(arch, layers, hidden), seed)


def random_model(config: PretrainedConfig, seed: int = 0) -> PreTrainedModel:
    """A frozen, eval-mode causal LM of `config` (fp32) whose matrices are drawn N(0, 0.2) from `seed`."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init gives tiny weights and near-uniform logits; scale up so scores are not all ~0.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.2)
    return model.eval().requires_grad_(False)
