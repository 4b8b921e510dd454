"""Scores of a mixture of experts: the engine against the per-sample autograd loop, in the same run.

    python benchmarks/moe.py                                  # OLMoE-like: 4 layers, 16 experts top-2, hidden 256
    python benchmarks/moe.py --experts 64 --top-k 8 --batch 8  # OLMoE's own ratio of experts

The loop is what a user without this tool writes: one sample at a time, every scored weight requiring
grad (the fused expert tensors, the routers, the attention linears), a backward of the last position's
max logit, |w · grad| per expert slice folded into fp32 sums, with the model's own experts kernel
(`--kernel`, grouped_mm by default, transformers' fastest on a CPU). The engine: stream_taylor_scores
into ScoreSum (the Finding 1 reducer), `--batch` samples per pass. Both give the same sums (the largest
difference, relative to each unit's largest sum, is printed); the figure is the ratio of their samples
per second, each timed over `--repeats` runs, the best kept (machines here are noisy).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from machine import describe
from transformers import OlmoeConfig

from lit_activation.engine import EngineSettings, ScoreSum, stream_taylor_scores
from lit_activation.models.experts import ExpertSlice
from lit_activation.models.layers import scored_modules
from lit_activation.models.tiny import VOCAB, random_model


def olmoe_like(args: argparse.Namespace) -> torch.nn.Module:
    """A random OLMoE-architecture model (weights N(0, 0.2): scores far from zero), fp32, frozen."""
    config = OlmoeConfig(
        vocab_size=VOCAB, hidden_size=args.hidden, intermediate_size=args.hidden * 2, num_hidden_layers=args.layers, num_attention_heads=8,
        num_key_value_heads=8, num_experts=args.experts, num_experts_per_tok=args.top_k, max_position_embeddings=1024, pad_token_id=0, eos_token_id=1,
        bos_token_id=2,
    )
    config._attn_implementation = "eager"
    config._experts_implementation = args.kernel
    return random_model(config)


def per_sample_loop(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Σ over samples of |w · ∂D/∂w| per scored unit, one sample and one full backward at a time."""
    units = scored_modules(model)
    tensors = {name: getattr(u.experts, u.param) if isinstance(u, ExpertSlice) else u.weight for name, u in units.items()}
    sums = {name: torch.zeros(u.weight.shape) for name, u in units.items()}
    for p in {id(t): t for t in tensors.values()}.values():
        p.requires_grad_(True)
    try:
        for row in ids:
            logits = model(input_ids=row[None]).logits[0, -1]
            grads = dict(zip(tensors, torch.autograd.grad(logits[logits.argmax()], list(tensors.values()), allow_unused=True), strict=True))
            for name, u in units.items():
                grad = grads[name]
                if grad is None:
                    continue
                w = tensors[name]
                part = (w * grad)[u.expert] if isinstance(u, ExpertSlice) else w * grad
                sums[name] += part.detach().abs()
    finally:
        model.requires_grad_(False)
    return sums


def engine(model: torch.nn.Module, ids: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
    units = scored_modules(model)
    sums = ScoreSum(units)
    for start in range(0, ids.shape[0], batch):
        rows = ids[start : start + batch]
        sums.begin(rows.shape[0])
        stream_taylor_scores(model, rows, torch.ones_like(rows), sums.update, EngineSettings(), units)
        sums.end()
    return sums.sums


def best_time(run, repeats: int) -> tuple[float, object]:  # noqa: ANN001 - a callable
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128, help="tokens per sample")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8, help="samples per engine pass")
    parser.add_argument("--kernel", default="grouped_mm", choices=["eager", "batched_mm", "grouped_mm"], help="the loop's experts kernel")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = olmoe_like(args)
    ids = torch.randint(4, VOCAB, (args.samples, args.tokens), generator=torch.Generator().manual_seed(0))
    loop_s, loop = best_time(lambda: per_sample_loop(model, ids), args.repeats)
    ours_s, ours = best_time(lambda: engine(model, ids, args.batch), args.repeats)
    difference = max(float((ours[n] - loop[n]).abs().max() / loop[n].abs().max()) for n in loop if loop[n].any())
    result = {
        "machine": describe(), "config": vars(args), "scored_parameters": sum(v.numel() for v in loop.values()),
        "loop_samples_per_s": args.samples / loop_s, "engine_samples_per_s": args.samples / ours_s, "speedup": loop_s / ours_s,
        "max_normalised_difference": difference,
    }
    print(json.dumps(result, indent=1))
    print(f"engine {result['engine_samples_per_s']:.2f} samples/s vs the per-sample loop {result['loop_samples_per_s']:.2f}: "
          f"{result['speedup']:.2f}x; sums equal within {difference:.1e}")


if __name__ == "__main__":
    main()
