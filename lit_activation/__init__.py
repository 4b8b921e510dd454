"""lit-activation: Taylor activation patterns of LLM parameters, LLMDcos, and activation-guided pruning.

The public API is `__all__`, imported on first use (so that `import lit_activation` stays light):

    from lit_activation import ActivationModule, ActivationDataModule, ActivationCounts

`ActivationModule` (the LightningModule), the data modules and the callbacks compose with Lightning's
Trainer; `prune_model`, `perplexity` and `write_report` work on a model you hold or on finished runs.
docs/python.md shows each; `lit-activation --help` runs the same from the command line.
"""

from importlib.metadata import PackageNotFoundError, version

from lit_activation import deprecated
from lit_activation.public import lazy_exports

try:  # pyproject.toml's version, as installed: its one source
    __version__ = version("lit-activation")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

deprecated.install()  # old class paths that saved configs name keep working, with a warning

_EXPORTS = {
    "ActivationModule": "lit_activation.module",
    "ActivationTrainer": "lit_activation.trainer",
    "ActivationDataModule": "lit_activation.data.datamodule",
    "PerplexityDataModule": "lit_activation.data.perplexity",
    "EngineSettings": "lit_activation.engine.settings",
    "taylor_scores": "lit_activation.engine.scores",
    "ActivationCounts": "lit_activation.callbacks.counts",
    "LLMDcos": "lit_activation.callbacks.llmdcos",
    "STSCorrelation": "lit_activation.callbacks.sts",
    "AllPairsSimilarity": "lit_activation.callbacks.allpairs",
    "Pruning": "lit_activation.callbacks.pruning",
    "ZeroShotEval": "lit_activation.callbacks.zeroshot",
    "RunStatus": "lit_activation.callbacks.status",
    "Calibration": "lit_activation.pruning.context",
    "prune_model": "lit_activation.pruning.prune",
    "perplexity": "lit_activation.analyses.perplexity",
    "load_causal_lm": "lit_activation.models.loading",
    "load_tokenizer": "lit_activation.models.loading",
    "Report": "lit_activation.report.command",
    "write_report": "lit_activation.report.command",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
