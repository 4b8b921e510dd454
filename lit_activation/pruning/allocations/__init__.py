"""Layer-wise sparsity allocations, one class per method (docs/method.md §4).

`Uniform` (Wanda's), `Activation` (the paper's, with a `CountsSource`: `GivenCounts`, `CountsFile`,
`OnTheFlyCounts`), `OWL` and `AlphaPruning`. Select one in YAML with
`class_path: lit_activation.pruning.allocations.OWL`.
"""

from lit_activation.pruning.allocations.activation import Activation
from lit_activation.pruning.allocations.alpha import AlphaPruning
from lit_activation.pruning.allocations.base import Allocation
from lit_activation.pruning.allocations.counts import CountsFile, CountsSource, GivenCounts, OnTheFlyCounts, activation_layer_counts
from lit_activation.pruning.allocations.owl import OWL
from lit_activation.pruning.allocations.uniform import Uniform

__all__ = [
    "OWL", "Activation", "Allocation", "AlphaPruning", "CountsFile", "CountsSource", "GivenCounts", "OnTheFlyCounts", "Uniform",
    "activation_layer_counts",
]
