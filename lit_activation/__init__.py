"""lit-activation: Taylor activation patterns of LLM parameters, LLMDcos, and activation-guided pruning.

Start with `lit_activation.engine.scores.taylor_scores` (the math), `lit_activation.module.ActivationModule`
(the LightningModule) and the callbacks in `lit_activation.callbacks`; `lit-activation --help` runs it.
"""

__version__ = "0.1.0"

from lit_activation import deprecated

deprecated.install()  # old class paths that saved configs name keep working, with a warning
