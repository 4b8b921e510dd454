"""Reference numbers of the embedded default (SmolLM2-135M) for a fixed seed and input set.

    python tests/reference_values.py --write     # record them again (after an intended change)

NOT an independent check: the numbers were produced by this project's own engine (tests/reference/
embedded.json, with the torch version and date). They guard the engine against silent drift while it
is optimised (split products, new tiling, reordered sums), like lm-eval's stored task scores: a wrong
refactoring changes them by far more than the tolerances, a reordering of float sums does not.
Correctness itself is tested against naive per-sample loops (tests/test_scores.py and others).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lit_activation.analyses.counts import layer_counts
from lit_activation.analyses.similarity import cosine_from_gram, interleave
from lit_activation.data.samples import sample_inputs
from lit_activation.engine import EngineSettings, LayerGram, ScoreSum, stream_taylor_scores
from lit_activation.models.layers import layer_map, linear_modules
from lit_activation.models.loading import load_causal_lm

PATH = Path(__file__).parents[1] / "reference" / "embedded.json"
GAMMAS = (1e-5, 1e-4, 1e-3)


def compute() -> dict:
    """Per layer: mean score, counts above three thresholds (4 wiki windows of 48 tokens); LLMDcos of
    2 wiki/news pairs (the engine's defaults: max_logit, exact fp32)."""
    model, tokenizer = load_causal_lm("smollm2-135m")
    wiki = torch.tensor(sample_inputs("wiki", 4, tokenizer, seed=0, window=48))
    news = torch.tensor(sample_inputs("news", 2, tokenizer, seed=0, window=48))
    modules = linear_modules(model)
    sums = ScoreSum(modules)
    sums.begin(wiki.shape[0])
    stream_taylor_scores(model, wiki, torch.ones_like(wiki), sums.update, EngineSettings(), modules)
    sums.end()
    means = sums.means()
    layer_of, _, n_layers = layer_map(model)
    mean_per_layer = [0.0] * n_layers
    sizes = [0] * n_layers
    for name, mean in means.items():
        mean_per_layer[layer_of[name]] += float(mean.double().sum())
        sizes[layer_of[name]] += mean.numel()
    ones = {"input_ids": wiki[:2], "attention_mask": torch.ones_like(wiki[:2])}
    ids, mask = interleave(ones, {"input_ids": news, "attention_mask": torch.ones_like(news)})
    gram = LayerGram(layer_of, n_layers)
    gram.begin(2, 2, ids.device)
    stream_taylor_scores(model, ids, mask, gram.update, EngineSettings(), modules)
    gram.end()
    return {
        "mean_score_per_layer": [t / n for t, n in zip(mean_per_layer, sizes, strict=True)],
        "layer_counts": {f"{g:g}": layer_counts(means, layer_of, n_layers, g).tolist() for g in GAMMAS},
        "layer_sizes": sizes,
        "llmdcos": cosine_from_gram(gram.gram)[..., 0, 1].tolist(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    values = compute()
    if args.write:
        PATH.parent.mkdir(exist_ok=True)
        PATH.write_text(json.dumps({"torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), **values}, indent=1))
    print(json.dumps(values)[:400])
