"""The paper's analyses as pure functions of scores and hidden states (no Lightning): one idea per file.

- counts.py      Finding 1: parameters per layer whose mean score exceeds γ, histograms, quantiles
- similarity.py  Findings 2-3: LLMDcos from Gram matrices, the dataset × dataset matrix
- sts.py         Validation 3: layer sums of LLMDcos and their Spearman ρ with human scores
- baselines.py   what LLMDcos is compared with: mean-pooled hidden states, TF-IDF
- zeroshot.py    Validation 2: zero-shot accuracy (lm-evaluation-harness, or the paper's scorer)
- perplexity.py  Validation 1's number: a model's perplexity on a corpus
"""

from lit_activation.public import lazy_exports

_EXPORTS = {
    "layer_counts": "lit_activation.analyses.counts", "dataset_summary": "lit_activation.analyses.counts",
    "llmdcos": "lit_activation.analyses.similarity", "cosine_from_gram": "lit_activation.analyses.similarity",
    "similarity_matrix": "lit_activation.analyses.similarity", "pair_cosines": "lit_activation.analyses.similarity",
    "spearman": "lit_activation.analyses.sts", "per_layer_rho": "lit_activation.analyses.sts",
    "tfidf_cosines": "lit_activation.analyses.baselines", "zero_shot": "lit_activation.analyses.zeroshot",
}  # `perplexity` is lit_activation.perplexity (here its name is its module's)
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
