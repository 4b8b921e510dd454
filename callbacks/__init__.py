"""Lightning callbacks that read like the paper's sections (importable as `lit_activation.callbacks`)."""

from lit_activation.callbacks.allpairs import AllPairsSimilarity
from lit_activation.callbacks.counts import ActivationCounts
from lit_activation.callbacks.llmdcos import LLMDcos
from lit_activation.callbacks.pruning import WandaPruning
from lit_activation.callbacks.sts import STSCorrelation
from lit_activation.callbacks.zeroshot import ZeroShotEval

__all__ = ["ActivationCounts", "AllPairsSimilarity", "LLMDcos", "STSCorrelation", "WandaPruning", "ZeroShotEval"]
