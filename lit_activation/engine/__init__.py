"""The scoring engine: per-sample Taylor scores, exact in fp32, streamed to reducers as row tiles.

- settings.py   EngineSettings: target, compute dtype, products, tile budget, rows, recomputation
- scores.py     one batched forward/backward whose hooks form the per-sample gradients tile by tile
- products.py   plain fp32 or split-bf16 products, and the matmul precision pinned during a pass
- split.py      the split-precision algebra (bf16 parts, fp32 accuracy on tensor cores)
- tensor_core.py  a bit-level model of how a tensor core adds, for tests and benchmarks
- kernels.py    a fused Triton kernel for Finding 1's reduction |W| ⊙ Σ_s |G_s| (CUDA; opt-in)
- linear_kernel.py  a fused Triton kernel for the linears' fp32 products, split in registers (CUDA; opt-in)
- precision.py  fp32 compute from bf16/fp16 weights without an fp32 copy of the model
- targets.py    D(s): max_logit, log_prob, the chunked loss
- tiling.py     how much of a module one tile holds
- reduce.py     ScoreSum (Finding 1) and LayerGram (LLMDcos), with the deferred NaN/inf check
"""

from lit_activation.engine.reduce import LayerGram, ScoreSum
from lit_activation.engine.scores import ScoreConsumer, ScoreTile, stream_taylor_scores, taylor_scores
from lit_activation.engine.settings import EngineSettings, RowRanges

__all__ = ["EngineSettings", "LayerGram", "RowRanges", "ScoreConsumer", "ScoreSum", "ScoreTile", "stream_taylor_scores", "taylor_scores"]
