"""The models analysed: where they come from, what they are shaped like, and which weights are scored.

- loading.py        load a model and its tokenizer: embedded default, hub id, local directory, GGUF file
- architectures.py  a model's config without its weights (published configs offline), fake-tensor models
- layers.py         the scored modules: decoder blocks, their linears, layer and kind of each
- tiny.py           tiny random models and a character tokenizer, for tests and smoke runs
"""
