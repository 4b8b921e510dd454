"""Within-layer pruning metrics, one class per file: which weights of a row are pruned first.

`Wanda` (|W|·‖X‖, the default), `Magnitude` (|W|), `Taylor` (the mean Taylor score, from this
project's engine) and `GBLM` (Wanda plus a gradient term). Select one with `class_path`.
"""

from lit_activation.pruning.metrics.base import PruningMetric
from lit_activation.pruning.metrics.gblm import GBLM
from lit_activation.pruning.metrics.magnitude import Magnitude
from lit_activation.pruning.metrics.taylor import Taylor
from lit_activation.pruning.metrics.wanda import Wanda

__all__ = ["GBLM", "Magnitude", "PruningMetric", "Taylor", "Wanda"]
