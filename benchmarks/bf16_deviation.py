"""How far the bf16 fast mode (`compute_dtype: bfloat16`) moves the paper's numbers from exact fp32.

    python benchmarks/bf16_deviation.py                      # embedded default, 16 × 128 tokens
    python benchmarks/bf16_deviation.py --samples 32 --pairs 16

Both runs use the same weights stored in bf16 (every paper-scale config loads them so); the
reference computes forward and backward in fp32 (the default, exact), the fast mode in bf16. It
reports what a user reads off the two runs: Finding 1's per-layer counts at γ and at the
reference's quantile thresholds (the same thresholds applied to both runs), and LLMDcos per layer
of sample pairs from two datasets.
"""

from __future__ import annotations

import argparse
import json

import torch

from lit_activation.analyses.counts import layer_counts
from lit_activation.analyses.similarity import cosine_from_gram, interleave
from lit_activation.data.samples import sample_inputs
from lit_activation.engine import EngineSettings, LayerGram, ScoreSum, stream_taylor_scores
from lit_activation.models.layers import layer_map, linear_modules
from lit_activation.models.loading import load_causal_lm


def mean_scores(model: torch.nn.Module, ids: torch.Tensor, batch: int, compute: torch.dtype) -> dict[str, torch.Tensor]:
    """Mean A per parameter over the samples (Finding 1's statistic)."""
    sums = ScoreSum(linear_modules(model))
    mask = torch.ones_like(ids)
    for start in range(0, ids.shape[0], batch):
        rows = slice(start, start + batch)
        sums.begin(ids[rows].shape[0])
        stream_taylor_scores(model, ids[rows], mask[rows], sums.update, EngineSettings(compute_dtype=str(compute).removeprefix("torch.")))
        sums.end()
    return sums.means()


def pair_llmdcos(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
    """(pairs, layers) LLMDcos of row i of `a` with row i of `b`."""
    ids, mask = interleave({"input_ids": a, "attention_mask": torch.ones_like(a)}, {"input_ids": b, "attention_mask": torch.ones_like(b)})
    layer_of, _, n_layers = layer_map(model)
    gram = LayerGram(layer_of, n_layers)
    gram.begin(a.shape[0], 2, ids.device)
    stream_taylor_scores(model, ids, mask, gram.update, EngineSettings(compute_dtype=str(compute).removeprefix("torch.")))
    gram.end()
    return cosine_from_gram(gram.gram.double())[..., 0, 1]


def quantile_threshold(means: dict[str, torch.Tensor], q: float) -> float:
    """The q-quantile of the pooled mean scores (exact, by sorting a float64 copy)."""
    pooled = torch.cat([m.flatten() for m in means.values()]).double()
    k = min(pooled.numel() - 1, int(q * (pooled.numel() - 1)))
    return float(pooled.kthvalue(k + 1).values)


def compare_counts(ref: dict[str, torch.Tensor], fast: dict[str, torch.Tensor], layer_of: dict[str, int], n_layers: int, threshold: float) -> dict:
    exact = layer_counts(ref, layer_of, n_layers, threshold).double()
    approx = layer_counts(fast, layer_of, n_layers, threshold).double()
    relative = (approx - exact).abs() / exact.clamp_min(1)
    return {
        "threshold": threshold,
        "fp32_counts": exact.long().tolist(),
        "bf16_counts": approx.long().tolist(),
        "max_relative_difference": float(relative.max()),
        "mean_relative_difference": float(relative.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--gamma", type=float, default=2e-5)
    parser.add_argument("--quantiles", type=float, nargs="+", default=[0.5, 0.9, 0.99])
    args = parser.parse_args()

    torch.manual_seed(0)
    model, tokenizer = load_causal_lm(args.model, "bfloat16")
    layer_of, _, n_layers = layer_map(model)
    ids = torch.tensor(sample_inputs("wiki", args.samples, tokenizer, seed=0, window=args.tokens))
    ref = {k: v.clone() for k, v in mean_scores(model, ids, args.batch, torch.float32).items()}
    fast = mean_scores(model, ids, args.batch, torch.bfloat16)
    scale = max(float(v.abs().max()) for v in ref.values())
    max_dev = max(float((fast[k] - ref[k]).abs().max()) for k in ref) / scale
    counts = {"gamma": compare_counts(ref, fast, layer_of, n_layers, args.gamma)}
    for q in args.quantiles:
        counts[f"q{q:g}"] = compare_counts(ref, fast, layer_of, n_layers, quantile_threshold(ref, q))

    a = torch.tensor(sample_inputs("wiki", args.pairs, tokenizer, seed=1, window=args.tokens))
    b = torch.tensor(sample_inputs("news", args.pairs, tokenizer, seed=1, window=args.tokens))
    cos_ref = pair_llmdcos(model, a, b, torch.float32)
    cos_fast = pair_llmdcos(model, a, b, torch.bfloat16)
    per_layer = (cos_fast - cos_ref).abs().max(0).values
    result = {
        "model": args.model, "weights": "bfloat16", "samples": args.samples, "tokens": args.tokens,
        "mean_score_max_abs_deviation_over_max": max_dev,
        "counts": counts,
        "llmdcos_max_abs_difference_per_layer": per_layer.tolist(),
        "llmdcos_mean_per_layer_fp32": cos_ref.mean(0).tolist(),
        "llmdcos_mean_per_layer_bf16": cos_fast.mean(0).tolist(),
    }
    print(json.dumps(result, indent=1))
    print(f"\nmean-score deviation (max-normalised): {max_dev:.2e}")
    for name, c in counts.items():
        print(f"counts at {name} (threshold {c['threshold']:.3g}): max relative difference per layer {c['max_relative_difference']:.2%}, "
              f"mean {c['mean_relative_difference']:.2%}")
    print(f"LLMDcos per layer: max |bf16 - fp32| {float(per_layer.max()):.2e} (layer {int(per_layer.argmax())}), mean {float(per_layer.mean()):.2e}")


if __name__ == "__main__":
    main()
