"""lit-activation: Taylor activation patterns of LLM parameters, LLMDcos, and activation-guided pruning.

Start with `lit_activation.engine.scores.taylor_scores` (the math), `lit_activation.module.ActivationModule`
(the LightningModule) and the callbacks in `lit_activation.callbacks`; `lit-activation --help` runs it.
"""

from importlib.metadata import PackageNotFoundError, version

from lit_activation import deprecated

try:  # pyproject.toml's version, as installed: its one source
    __version__ = version("lit-activation")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

deprecated.install()  # old class paths that saved configs name keep working, with a warning
