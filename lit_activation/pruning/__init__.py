"""Pruning (Validations 1-2): which weights to zero, layer by layer, and how to compare the ways.

- allocations/  how an overall sparsity is spread over the layers: Uniform, Activation (the
                paper's, from Finding 1 counts), OWL, AlphaPruning; one class per file
- metrics/      which weights of a row go first: Wanda, Magnitude, Taylor (this engine's scores),
                GBLM; one class per file
- sparsity.py   the allocations' pure math (the paper's formula, OWL's ratios, the Hill estimator)
- wanda.py      sequential block-by-block pruning with exact block inputs; masks from scores
- export.py     the pruned model in Hugging Face format
- comparison.py the resumable sweep behind `lit-activation compare`
- context.py    what an allocation or a metric may read
"""
