"""Pruning (Validations 1-2): which weights to zero, layer by layer, and how to compare the ways.

- allocations/  how an overall sparsity is spread over the layers: Uniform, Activation (the
                paper's, from Finding 1 counts), OWL, AlphaPruning; one class per file
- metrics/      which weights of a layer go: Wanda, Magnitude, Taylor (this engine's scores),
                GBLM (scores, the lowest of each row pruned), and SparseGPT (OBS updates from
                H = 2XXᵀ, the kept weights reconstructed); one class per file
- sparsity.py   the allocations' pure math (the paper's formula, OWL's ratios, the Hill estimator)
- masks.py      the mask from scores: lowest per row, or n of every m; a module masked in place
- sequential.py the calibration batch's inputs to each block, block by block (their norms or H,
                and their memory)
- prune.py      sequential pruning by a metric: each block's linears pruned, in place
- export.py     the pruned model in Hugging Face format
- comparison.py the resumable sweep behind `lit-activation compare`
- context.py    the calibration settings, and what an allocation or a metric may read
"""

from lit_activation.public import lazy_exports

_EXPORTS = {
    "prune_model": "lit_activation.pruning.prune", "prune_sequential": "lit_activation.pruning.prune",
    "achieved_sparsity": "lit_activation.pruning.prune", "Calibration": "lit_activation.pruning.context",
    "PruningContext": "lit_activation.pruning.context",
}  # the allocations and the metrics: lit_activation.pruning.allocations, lit_activation.pruning.metrics
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
