"""The models analysed: where they come from, what they are shaped like, and which weights are scored.

- loading.py        load a model and its tokenizer: embedded default, hub id, local directory, GGUF file
- architectures.py  a model's config without its weights (published configs offline), fake-tensor models
- layers.py         the scored modules: decoder blocks, their linears, layer and kind of each
- tiny.py           tiny random models and a character tokenizer, for tests and smoke runs
"""

from lit_activation.public import lazy_exports

# loading a model: lit_activation.load_causal_lm (lit_activation.models.loading)
_EXPORTS = dict.fromkeys(("tiny_model", "tiny_tokenizer", "tiny_config"), "lit_activation.models.tiny")
_EXPORTS |= dict.fromkeys(("model_config", "published_config"), "lit_activation.models.architectures")
__all__ = sorted(_EXPORTS)

# lit_activation.models was one module before this package: its names, found where they live now
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, moved={
    **{name: f"lit_activation.models.loading.{name}" for name in (
        "EMBEDDED_DEFAULT", "TINY_PREFIX", "DTYPES", "resolve_dtype", "cache_dir", "load_causal_lm", "load_tokenizer", "local_source",
    )},
    **{name: f"lit_activation.models.layers.{name}" for name in (
        "decoder_layers", "block_linears", "linear_modules", "layer_index", "module_kind", "weight_out_in", "layer_map",
    )},
})
