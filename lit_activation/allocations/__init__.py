"""Layer-wise sparsity allocations, one class per method (docs/method.md §4).

`Uniform` (Wanda's), `Activation` (the paper's, with a `CountsSource`: `GivenCounts`, `CountsFile`,
`OnTheFlyCounts`) and `OWL`. Select one in YAML with `class_path: lit_activation.allocations.OWL`.
"""

from lit_activation.allocations.activation import Activation
from lit_activation.allocations.base import Allocation, AllocationContext
from lit_activation.allocations.counts import CountsFile, CountsSource, GivenCounts, OnTheFlyCounts, activation_layer_counts
from lit_activation.allocations.owl import OWL
from lit_activation.allocations.uniform import Uniform

__all__ = [
    "OWL", "Activation", "Allocation", "AllocationContext", "CountsFile", "CountsSource", "GivenCounts", "OnTheFlyCounts",
    "Uniform", "activation_layer_counts",
]
