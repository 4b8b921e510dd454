"""The inputs: registered datasets (or texts in memory), their prompts, and the data modules that batch them.

- registry.py    dataset name -> where its records come from and how one becomes a prompt
- prompts.py     the paper's prompt formats
- embedded.py    the text sets shipped with the package (offline stand-ins, rated sets)
- samples.py     seeded samples, corpus windows, calibration and evaluation text, as token ids
- datamodule.py  ActivationDataModule: groups of inputs for the analyses (single, pairs, sts, set)
- perplexity.py  PerplexityDataModule: non-overlapping chunks of a corpus for perplexity
"""

from lit_activation.public import lazy_exports

_EXPORTS = {
    "ActivationDataModule": "lit_activation.data.datamodule", "PerplexityDataModule": "lit_activation.data.perplexity",
    "REGISTRY": "lit_activation.data.registry", "DatasetSpec": "lit_activation.data.registry", "get_spec": "lit_activation.data.registry",
    "load_records": "lit_activation.data.registry",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
