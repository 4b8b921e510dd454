"""Lightning callbacks that read like the paper's sections (importable as `lit_activation.callbacks`).

- base.py      the score-stream protocol (ScoreCallback), the run dir, logging results, reductions over ranks
- counts.py    ActivationCounts: Finding 1, activated parameters per layer and module, per dataset
- groups.py    GroupGramCallback: per-group Gram tables of scores and hidden states (LLMDcos, STS, all pairs)
- llmdcos.py   LLMDcos: Findings 2-3, box plots per layer and the dataset × dataset matrix
- sts.py       STSCorrelation: Validation 3, Spearman ρ of layer-summed LLMDcos with human scores
- allpairs.py  AllPairsSimilarity: every two texts of a set, per layer, with baselines
- pruning.py   Pruning: Validations 1-2, layer-wise sequential pruning before evaluation
- zeroshot.py  ZeroShotEval: zero-shot accuracy of the (pruned) model
- status.py    RunStatus: what a run says (a resume's work done and left, the unit of work, where results are)

Each states what it allocates (`memory_needs`), which the memory plan adds up.
"""

from lit_activation.callbacks.allpairs import AllPairsSimilarity
from lit_activation.callbacks.counts import ActivationCounts
from lit_activation.callbacks.llmdcos import LLMDcos
from lit_activation.callbacks.pruning import Pruning
from lit_activation.callbacks.status import RunStatus
from lit_activation.callbacks.sts import STSCorrelation
from lit_activation.callbacks.zeroshot import ZeroShotEval
from lit_activation.deprecated import moved_attributes

# a new analysis subclasses lit_activation.callbacks.base.ScoreCallback
__all__ = ["ActivationCounts", "AllPairsSimilarity", "LLMDcos", "Pruning", "RunStatus", "STSCorrelation", "ZeroShotEval"]

__getattr__ = moved_attributes(__name__, {"WandaPruning": "lit_activation.callbacks.pruning.Pruning"})  # the name of 0.1
