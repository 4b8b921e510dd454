"""Within-layer pruning methods, one class per file: which weights of a layer are pruned.

Metrics (one score per weight, the lowest of each row pruned): `Wanda` (|W|·‖X‖, the default),
`Magnitude` (|W|), `Taylor` (the mean Taylor score, from this project's engine) and `GBLM` (Wanda
plus a gradient term). `SparseGPT` prunes each linear itself from H = 2XXᵀ and updates the weights
it keeps. Select one with `class_path`.
"""

from lit_activation.pruning.metrics.base import PruningMetric
from lit_activation.pruning.metrics.gblm import GBLM
from lit_activation.pruning.metrics.magnitude import Magnitude
from lit_activation.pruning.metrics.sparsegpt import SparseGPT
from lit_activation.pruning.metrics.taylor import Taylor
from lit_activation.pruning.metrics.wanda import Wanda

__all__ = ["GBLM", "Magnitude", "PruningMetric", "SparseGPT", "Taylor", "Wanda"]
