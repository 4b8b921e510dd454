"""The memory plan of a mixture of experts: the simulated scoring pass against the same pass on real
tensors, and the published large shapes planned offline (docs/moe.md, "The memory plan")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from lit_activation.cli import build_cli
from lit_activation.models.architectures import model_config
from lit_activation.models.tiny import tiny_model
from lit_activation.planning.plan import parameters
from tests.helpers.allocations import scoring_peaks

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.mark.parametrize("arch", ["mixtral", "gpt_oss"])  # concatenated and interleaved-transposed layouts; measured alike on Qwen2-MoE, DeepSeek-V3
def test_simulated_routing_matches_a_real_pass(arch):
    """The planner's activations and tile (fake tensors, the top-k experts taking every token) against a
    real scoring pass with the router's own choices, by the same tracker: measured 1.004-1.018."""
    measured, simulated = scoring_peaks(tiny_model(arch, layers=3, hidden=64))
    assert measured > 0
    assert simulated == pytest.approx(measured, rel=0.05)


# Parameter counts of the published models (their model cards), from the configs the planner holds
PUBLISHED = {"mixtral-8x7b": 46.70e9, "qwen3-30b-a3b": 30.53e9, "olmoe-1b-7b": 6.92e9}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_mixtures_of_experts_have_their_published_size(name):
    p = parameters(model_config(name), torch.bfloat16)
    assert p.total == pytest.approx(PUBLISHED[name], rel=2e-3)
    assert p.scored < p.total and p.largest_scored < p.largest  # an expert's slice, not the fused tensor


@pytest.mark.slow
def test_plan_prints_a_published_mixture_of_experts_offline(capsys):
    build_cli([
        "plan", "--config", str(CONFIGS / "counts.yaml"), "--model.model", "olmoe-1b-7b", "--device_type", "cuda", "--devices", "8",
        "--trainer.strategy", '{"class_path": "lightning.pytorch.strategies.ModelParallelStrategy"}', "--memory_gb", "80",
    ])
    out = capsys.readouterr().out
    assert "olmoe-1b-7b, weights bfloat16, compute float32, per device of 8 × cuda (sharded over groups of 8)" in out
    weights = float(re.search(r"weights\s+([0-9.]+) GB", out).group(1))
    assert weights == pytest.approx(6.919e9 * 2 / 8 / 2**30, rel=1e-2)
    assert re.search(r"activations \+ one tile\s+[0-9.]+ GB", out) and "fits" in out
