"""Wanda masks on hand-made matrices, and sequential pruning against an independent per-layer loop."""

from __future__ import annotations

import pytest
import torch

from lit_activation.models import decoder_layers, linear_modules, weight_out_in
from lit_activation.tiny import tiny_model
from lit_activation.wanda import prune_wanda, wanda_mask


def pruned_columns(mask: torch.Tensor) -> list[list[int]]:
    return [torch.nonzero(row).flatten().tolist() for row in mask]


def test_hand_made_4x8_with_ties():
    weight = torch.tensor([
        [1.0, 2, 3, 4, 5, 6, 7, 8],        # ascending: first four go
        [8.0, 7, 6, 5, 4, 3, 2, 1],        # descending: last four go
        [3.0, -1, 4, -1, 5, -9, 2, 6],     # |w| = 3 1 4 1 5 9 2 6: indices 1, 3, 6, 0
        [2.0, 2, 2, 2, 1, 1, 3, 3],        # two 1s, then a four-way tie of 2s: lower indices 0, 1 go
    ])
    mask = wanda_mask(weight, torch.ones(8), 0.5)
    assert pruned_columns(mask) == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 3, 6], [0, 1, 4, 5]]


def test_input_norm_reorders_columns():
    # equal weights: the norm decides; ‖X‖ = 8..1, so the last columns have the lowest scores
    mask = wanda_mask(torch.ones(4, 8), torch.arange(8, 0, -1).float(), 0.25)
    assert pruned_columns(mask) == [[6, 7]] * 4
    # all tied: the lower index is pruned first, in every row
    assert pruned_columns(wanda_mask(torch.ones(4, 8), torch.ones(8), 0.5)) == [[0, 1, 2, 3]] * 4


def test_two_of_four():
    weight = torch.tensor([[1.0, 4, 2, 3, 8, 5, 6, 7], [1.0, 1, 1, 1, 2, 2, 2, 2]])
    mask = wanda_mask(weight, torch.ones(8), 0.5, n=2, m=4)
    assert pruned_columns(mask) == [[0, 2, 5, 6], [0, 1, 4, 5]]
    assert (mask.view(2, 2, 4).sum(-1) == 2).all()


def test_row_sparsity_is_exact():
    torch.manual_seed(0)
    mask = wanda_mask(torch.randn(16, 64), torch.rand(64), 0.3)
    assert (mask.sum(1) == int(64 * 0.3)).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="outside"):
        wanda_mask(torch.ones(2, 4), torch.ones(4), 1.0)
    with pytest.raises(ValueError, match="expected \\(4,\\)"):
        wanda_mask(torch.ones(2, 4), torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="sparsity 0.3 was asked"):
        wanda_mask(torch.ones(2, 4), torch.ones(4), 0.3, n=2, m=4)
    with pytest.raises(ValueError, match="2 decoder layers"):
        prune_wanda(tiny_model("llama"), torch.randint(4, 100, (2, 8)), [0.5])


def naive_prune(model, calibration: torch.Tensor, sparsity: list[float], batch_size: int) -> None:
    """Independent Wanda: for each layer, a full-model forward (earlier layers already pruned) with
    hooks on that layer's modules, then each row's lowest scores zeroed, chosen by a Python sort."""
    _, layers = decoder_layers(model)
    modules = linear_modules(model)
    for index, _ in enumerate(layers):
        mine = {n: m for n, m in modules.items() if f".{index}." in n}
        sumsq = dict.fromkeys(mine, 0.0)

        def hook(name, sumsq=sumsq):  # this layer's sums, bound now
            def fn(module, args, output):
                x = args[0].detach()
                sumsq[name] = sumsq[name] + x.reshape(-1, x.shape[-1]).double().pow(2).sum(0)

            return fn

        handles = [m.register_forward_hook(hook(n)) for n, m in mine.items()]
        with torch.no_grad():
            for chunk in calibration.split(batch_size):
                model(input_ids=chunk, use_cache=False)
        for h in handles:
            h.remove()
        with torch.no_grad():
            for name, module in mine.items():
                weight = weight_out_in(module)
                score = weight.abs().float() * sumsq[name].sqrt().float()[None]
                k = int(weight.shape[1] * sparsity[index])
                for row in range(weight.shape[0]):
                    order = sorted(range(weight.shape[1]), key=lambda c: (score[row, c].item(), c))
                    # precondition of comparing masks exactly: the k-th and (k+1)-th smallest scores
                    # are far apart, so not even an ulp-level change of the norms could swap them
                    kth, next_ = score[row, order[k - 1]].item(), score[row, order[k]].item()
                    assert next_ - kth > 1e-5 * next_, f"{name} row {row}: scores {kth!r} and {next_!r} nearly tie at the pruning cut"
                    weight[row, order[:k]] = 0


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
def test_sequential_pruning_equals_naive_per_layer_loop(arch):
    calibration = torch.randint(4, 100, (6, 16), generator=torch.Generator().manual_seed(0))
    sparsity = [0.5, 0.3, 0.6]
    ours, reference = tiny_model(arch, layers=3), tiny_model(arch, layers=3)
    fractions = prune_wanda(ours, calibration, sparsity, batch_size=2)
    naive_prune(reference, calibration, sparsity, batch_size=2)
    # Exact equality is legitimate here: both run the same block calls on the same inputs in the
    # same order and chunking, so the norms are bit-identical; only the bookkeeping differs.
    for (name, a), b in zip(linear_modules(ours).items(), linear_modules(reference).values(), strict=True):
        assert torch.equal(a.weight == 0, b.weight == 0), name
        assert torch.equal(a.weight, b.weight)
    # the reported fraction of every module: ⌊in · s⌋ / in of its layer's sparsity s
    assert {round(f, 6) for n, f in fractions.items() if ".0." in n} == {0.5}
    assert fractions.keys() == linear_modules(ours).keys()
    for name, module in linear_modules(ours).items():
        index = next(i for i in range(3) if f".{i}." in name)
        fan_in = weight_out_in(module).shape[1]
        assert fractions[name] == pytest.approx(int(fan_in * sparsity[index]) / fan_in, rel=1e-6), name


def test_two_of_four_model_and_magnitude_metric():
    model = tiny_model("llama")
    assert all(bool((m.weight != 0).all()) for m in linear_modules(model).values())  # dense: no zero to start with
    prune_wanda(model, torch.randint(4, 100, (2, 8)), [0.5, 0.5], n=2, m=4)
    for module in linear_modules(model).values():
        zeros = (module.weight == 0).view(module.weight.shape[0], -1, 4).sum(-1)
        assert (zeros == 2).all()
    magnitude, dense = tiny_model("llama"), tiny_model("llama")
    prune_wanda(magnitude, torch.randint(4, 100, (2, 8)), [0.5, 0.5], metric="magnitude")
    for pruned, original in zip(linear_modules(magnitude).values(), linear_modules(dense).values(), strict=True):
        expected = wanda_mask(weight_out_in(original), torch.ones(original.weight.shape[1]), 0.5)
        assert torch.equal(weight_out_in(pruned) == 0, expected)  # |W| alone decides; inputs ignored
