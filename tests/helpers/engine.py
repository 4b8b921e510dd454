"""Shared by the engine's tests: padded batches, bf16 twins, fp64 reference scores and error measures."""

from __future__ import annotations

import torch

from lit_activation.engine import EngineSettings, ScoreSum, stream_taylor_scores
from lit_activation.models.layers import linear_modules
from lit_activation.models.tiny import tiny_model


def padded_batch(side: str, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows of lengths 9, 6, 8 padded to 9 on `side`."""
    g = torch.Generator().manual_seed(seed)
    lengths = [9, 6, 8]
    ids = torch.zeros((3, 9), dtype=torch.long)
    mask = torch.zeros((3, 9), dtype=torch.long)
    for r, n in enumerate(lengths):
        span = slice(9 - n, 9) if side == "left" else slice(0, n)
        ids[r, span] = torch.randint(4, 100, (n,), generator=g)
        mask[r, span] = 1
    return ids, mask


def bf16_and_fp32_twin(arch: str):
    """A model stored in bf16, and an fp32 model holding exactly the same (bf16-rounded) weights."""
    stored = tiny_model(arch).to(torch.bfloat16)
    twin = tiny_model(arch).to(torch.bfloat16).float()
    return stored, twin


def fp64_scores(model, row_ids: torch.Tensor, target: str = "max_logit") -> dict[str, torch.Tensor]:
    """|w · ∂D/∂w| for ONE unpadded sequence, in fp64 (a float64 copy of the model, plain autograd)."""
    twin = type(model)(model.config).double().eval()
    twin.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    with torch.no_grad():  # non-persistent buffers too (rotary frequencies, as rounded in a bf16 model)
        for name, buffer in model.named_buffers():
            twin.get_buffer(name).copy_(buffer.double())
    modules = linear_modules(twin)
    twin.requires_grad_(True)
    logits = twin(input_ids=row_ids[None]).logits[0]
    if target == "loss":
        value = torch.nn.functional.cross_entropy(logits[:-1], row_ids[1:])
    else:
        value = logits[-1, logits[-1].argmax()]
    value.backward()
    return {n: (m.weight * m.weight.grad).abs().detach() for n, m in modules.items()}


def max_normalised_error(got: dict[str, torch.Tensor], reference: list[dict[str, torch.Tensor]]) -> float:
    """The worst |got − ref| / max|ref| over modules and samples (the engine's accuracy measure)."""
    worst = 0.0
    for r, ref in enumerate(reference):
        for name, exact in ref.items():
            worst = max(worst, float((got[name][r].double() - exact).abs().max() / exact.abs().max()))
    return worst


def fused_sums(model, ids, mask, **settings) -> dict[str, torch.Tensor]:
    """Finding 1's batch sums of A per parameter, by the engine with `settings`."""
    sums = ScoreSum(linear_modules(model))
    sums.begin(ids.shape[0])
    stream_taylor_scores(model, ids, mask, sums.update, EngineSettings(**settings))
    sums.end()
    return sums.sums


def record_loads(monkeypatch, module, name: str) -> list[str]:
    """Wraps `module.name`, a function returning TMA descriptors or None, to record per call which
    loads the kernel then uses: "tma" or "pointers"."""
    seen: list[str] = []
    descriptors = getattr(module, name)

    def recorded(*args):
        found = descriptors(*args)
        seen.append("pointers" if found is None else "tma")
        return found

    monkeypatch.setattr(module, name, recorded)
    return seen


def median_error(y: torch.Tensor, exact: torch.Tensor) -> float:
    """The median relative error of y against an fp64 reference."""
    return float(((y.double() - exact).abs() / exact.abs()).median())


def max_error(y: torch.Tensor, exact: torch.Tensor) -> float:
    """The largest error of y against an fp64 reference, relative to the reference's largest value."""
    return float((y.double() - exact).abs().max() / exact.abs().max())
