"""The paper's analyses as pure functions of scores and hidden states (no Lightning): one idea per file.

- counts.py      Finding 1: parameters per layer whose mean score exceeds γ, histograms, quantiles
- similarity.py  Findings 2-3: LLMDcos from Gram matrices, the dataset × dataset matrix
- sts.py         Validation 3: layer sums of LLMDcos and their Spearman ρ with human scores
- baselines.py   what LLMDcos is compared with: mean-pooled hidden states, TF-IDF
- zeroshot.py    Validation 2: zero-shot accuracy (lm-evaluation-harness, or the paper's scorer)
"""
