"""One scoring phase in a fresh process: the planner's prediction and the allocator's real peak.

    python tests/phase_peak.py PHASE   ->  prints {"predicted": bytes, "measured": bytes}

PHASE: counts (max_logit, batch 4 × 256), llmdcos (a pairs batch: 2 groups of 4 rows), loss (the
chunked loss target), recompute (checkpoint_blocks), state (the Finding 1 accumulator alone).
Measured: the process's peak resident memory (the kernel's VmHWM, reset just before the phase)
over its resident memory at that moment, after a warm-up pass whose freed memory is handed back
to the system (memory.release_memory), so that the phase's own allocations are what grows. Run it
with MALLOC_MMAP_THRESHOLD_ fixed (tests/test_plan.py does): glibc's default threshold moves up
after large frees, so later activation-sized blocks stay in its heap and resident memory then
overstates the live peak (measured: up to 2× in the loss and recomputed phases).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from lit_activation.engine import EngineSettings, ScoreSum, stream_taylor_scores
from lit_activation.models.layers import linear_modules
from lit_activation.planning.memory import release_memory
from lit_activation.planning.plan import Job, ScoringPass, plan_memory

CONFIG = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8, vocab_size=4000,
              max_position_embeddings=512, tie_word_embeddings=False)
PHASES = {
    "counts": (EngineSettings(), 4, 256),
    "llmdcos": (EngineSettings(), 8, 256),
    "loss": (EngineSettings(target="loss", tile_mb=32), 4, 256),  # a larger tile: the head's chunks weigh in the peak
    "recompute": (EngineSettings(checkpoint_blocks=True), 4, 256),
}


def status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measure(run) -> int:  # noqa: ANN001
    release_memory()
    Path("/proc/self/clear_refs").write_text("5")
    baseline = status("VmRSS")
    run()
    return status("VmHWM") - baseline


def main(phase: str) -> dict:
    """The plan's items for the phase (plan.plan_memory, as a run makes it) against the measured growth."""
    torch.manual_seed(0)
    config = LlamaConfig(**CONFIG)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval().requires_grad_(False)
    modules = linear_modules(model)
    settings, rows, length = PHASES.get(phase, PHASES["counts"])
    if phase == "state":
        from lit_activation.callbacks import ActivationCounts  # Lightning: imported only by the phase that needs it

    job = Job(model="phase", engine=settings, datamodule=ScoringPass(rows, length), callbacks=[ActivationCounts()] if phase == "state" else [])
    items = plan_memory(job, config).phases["scoring"]
    if phase == "state":
        holder = []
        return {"predicted": items["Finding 1 sums (fp32)"], "measured": measure(lambda: holder.append(ScoreSum(modules)))}
    ids = torch.randint(0, config.vocab_size, (rows, length), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # one padded row: the masked copies are part of the peak
    stream_taylor_scores(model, ids[:1, :8], torch.ones_like(ids[:1, :8]), lambda tile: None, settings)  # warm-up: lazy imports, kernels
    predicted = items["activations + one tile"] + items.get("loss head chunks", 0)
    measured = measure(lambda: stream_taylor_scores(model, ids, mask, lambda tile: None, settings, modules))
    return {"predicted": predicted, "measured": measured}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
