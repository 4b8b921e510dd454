"""Wanda masks on hand-made matrices, and sequential pruning against an independent per-layer loop."""

from __future__ import annotations

import math

import pytest
import torch

from lit_activation.models.layers import decoder_layers, linear_modules, weight_out_in
from lit_activation.pruning.masks import wanda_mask
from lit_activation.pruning.metrics import GBLM, Magnitude, Taylor
from lit_activation.pruning.prune import prune_sequential
from tests.helpers.naive import input_sums, naive_scores


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


def test_bad_arguments(tiny_model):
    with pytest.raises(ValueError, match="outside"):
        wanda_mask(torch.ones(2, 4), torch.ones(4), 1.0)
    with pytest.raises(ValueError, match="expected \\(4,\\)"):
        wanda_mask(torch.ones(2, 4), torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="sparsity 0.3 was asked"):
        wanda_mask(torch.ones(2, 4), torch.ones(4), 0.3, n=2, m=4)
    with pytest.raises(ValueError, match="2 decoder layers"):
        prune_sequential(tiny_model(), torch.randint(4, 100, (2, 8)), [0.5])


def smallest(scores: list[float], k: int) -> list[int]:
    """Indices of the k smallest scores by a plain Python sort, ties to the lower index."""
    return sorted(range(len(scores)), key=lambda c: (scores[c], c))[:k]


def assert_clear_cut(values: list[float], order: list[int], k: int, where: str, rel: float) -> None:
    """Precondition of comparing masks exactly: the k-th and (k+1)-th smallest are more than `rel`
    apart, so no rounding difference between two computations of the scores could swap them."""
    if rel and 0 < k < len(order):
        kth, next_ = values[order[k - 1]], values[order[k]]
        assert next_ - kth > rel * abs(next_), f"{where}: scores {kth!r} and {next_!r} nearly tie at the pruning cut"


def naive_prune(
    model, calibration: torch.Tensor, sparsity: list[float], batch_size: int, score=None, nm: tuple[int, int] = (0, 0), rel: float = 1e-5
) -> None:
    """Independent sequential pruning: for each layer, a full-model forward (earlier layers already
    pruned) with hooks on that layer's modules for ‖X‖, then each row's (or each group of m's)
    lowest scores zeroed, chosen by a Python sort. score(name, weight (out, in), norm) defaults to
    Wanda's |W|·‖X‖. rel: how far apart the scores at the cut must be (assert_clear_cut): 1e-5 where
    both sides compute bit-identical norms, more where the scores come from another computation."""
    score = score or (lambda name, weight, norm: weight.abs().float() * norm.float()[None])
    _, layers = decoder_layers(model)
    modules = linear_modules(model)
    n, m = nm
    for index, _ in enumerate(layers):
        mine = {name: mod for name, mod in modules.items() if f".{index}." in name}
        sumsq = input_sums(model, mine, calibration, batch_size, lambda x: x.pow(2).sum(0))
        with torch.no_grad():
            for name, module in mine.items():
                weight = weight_out_in(module)
                s = score(name, weight, sumsq[name].sqrt())
                for row in range(weight.shape[0]):
                    values = s[row].tolist()
                    if m:
                        for g in range(0, len(values), m):
                            group = values[g : g + m]
                            order = sorted(range(m), key=lambda c, group=group: (group[c], c))
                            assert_clear_cut(group, order, n, f"{name} row {row} group {g}", rel)
                            weight[row, [g + c for c in order[:n]]] = 0
                        continue
                    k = int(weight.shape[1] * sparsity[index])
                    order = smallest(values, len(values))
                    assert_clear_cut(values, order, k, f"{name} row {row}", rel)
                    weight[row, order[:k]] = 0


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
def test_sequential_pruning_equals_naive_per_layer_loop(arch, tiny_model):
    calibration = torch.randint(4, 100, (6, 16), generator=torch.Generator().manual_seed(0))
    sparsity = [0.5, 0.3, 0.6]
    ours, reference = tiny_model(arch, layers=3), tiny_model(arch, layers=3)
    fractions = prune_sequential(ours, calibration, sparsity, batch_size=2)
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


def test_two_of_four_prunes_the_two_lowest_wanda_scores_of_each_group(tiny_model):
    calibration = torch.randint(4, 100, (2, 8), generator=torch.Generator().manual_seed(3))
    model, reference = tiny_model(), tiny_model()
    assert all(bool((mod.weight != 0).all()) for mod in linear_modules(model).values())  # dense: no zero to start with
    prune_sequential(model, calibration, [0.5, 0.5], n=2, m=4)
    naive_prune(reference, calibration, [0.5, 0.5], batch_size=1, nm=(2, 4))
    for (name, ours), theirs in zip(linear_modules(model).items(), linear_modules(reference).values(), strict=True):
        assert torch.equal(ours.weight == 0, theirs.weight == 0), name  # which two, not only how many


def test_magnitude_ignores_the_inputs(tiny_model):
    model, dense = tiny_model(), tiny_model()
    prune_sequential(model, torch.randint(4, 100, (2, 8)), [0.5, 0.3], metric=Magnitude())
    for (name, pruned), original in zip(linear_modules(model).items(), linear_modules(dense).values(), strict=True):
        weight = weight_out_in(original)
        k = int(weight.shape[1] * (0.5 if ".0." in name else 0.3))
        for row in range(weight.shape[0]):
            values = weight[row].abs().tolist()
            order = smallest(values, len(values))
            # both sides sort the very same |W| values with ties to the lower index: no precondition
            assert sorted(torch.nonzero(weight_out_in(pruned)[row] == 0).flatten().tolist()) == sorted(order[:k]), (name, row)


def naive_mean_taylor(model, calibration: torch.Tensor, target: str = "max_logit") -> dict[str, torch.Tensor]:
    """Mean |w · ∂D/∂w| over the calibration rows, one plain backward per row (tests/naive.py)."""
    per = [naive_scores(model, row, target) for row in calibration]
    return {name: torch.stack([p[name] for p in per]).mean(0) for name in per[0]}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_taylor_metric_prunes_by_mean_taylor_scores_of_the_dense_model(arch, tiny_model):
    calibration = torch.randint(4, 100, (4, 12), generator=torch.Generator().manual_seed(5))
    sparsity = [0.5, 0.4]
    model, reference = tiny_model(arch), tiny_model(arch)
    means = naive_mean_taylor(reference, calibration)  # before any pruning: the dense model's scores
    prune_sequential(model, calibration, sparsity, metric=Taylor(), batch_size=3)
    modules = linear_modules(reference)
    naive_prune(reference, calibration, sparsity, batch_size=3, score=lambda name, weight, norm: weight_out_in(modules[name], means[name]), rel=1e-4)
    for (name, ours), theirs in zip(linear_modules(model).items(), modules.values(), strict=True):
        assert torch.equal(ours.weight == 0, theirs.weight == 0), name


@pytest.mark.slow
def test_sequential_taylor_scores_each_block_on_the_model_pruned_so_far(tiny_model):
    calibration = torch.randint(4, 100, (3, 10), generator=torch.Generator().manual_seed(11))
    model, reference = tiny_model(), tiny_model()
    prune_sequential(model, calibration, [0.5, 0.5], metric=Taylor(sequential=True), batch_size=2)
    modules = linear_modules(reference)
    current: dict[str, torch.Tensor] = {}

    def score(name, weight, norm):
        if name not in current:  # first module of a layer: the layer's scores on the model as pruned now
            layer = name.split(".")[2]
            with torch.enable_grad():
                current.update({k: v for k, v in naive_mean_taylor(reference, calibration).items() if k.split(".")[2] == layer})
        return weight_out_in(modules[name], current[name])

    naive_prune(reference, calibration, [0.5, 0.5], batch_size=2, score=score, rel=1e-4)
    for (name, ours), theirs in zip(linear_modules(model).items(), modules.values(), strict=True):
        assert torch.equal(ours.weight == 0, theirs.weight == 0), name


def naive_gradient_squares(model, calibration: torch.Tensor) -> dict[str, torch.Tensor]:
    """Σ_s g_s² per weight (as stored, fp64), g_s the gradient of row s's mean next-token loss: one plain backward per row."""
    modules = linear_modules(model)
    squares = dict.fromkeys(modules, 0.0)
    model.requires_grad_(True)
    for row in calibration:
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=row[None]).logits[0]
        torch.nn.functional.cross_entropy(logits[:-1], row[1:]).backward()
        for name, module in modules.items():
            squares[name] = squares[name] + module.weight.grad.double() ** 2
    model.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    return squares


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_sharded_rank_keeps_metric_state_for_its_own_rows_of_a_linear_and_every_row_of_a_conv1d(arch, tiny_model):
    """A rank of a shard group (its rows in the context, as a sharded run sets them) keeps Taylor's
    means and GBLM's gradient squares for its own rows of each Linear, pruned on its shard; a Conv1D
    is pruned on its gathered weight (wanda.prune_module), so its state keeps every row. Against the
    per-sample loops, the rows they cover."""
    from lit_activation.pruning.context import PruningContext

    calibration = torch.randint(4, 100, (3, 10), generator=torch.Generator().manual_seed(3))
    model = tiny_model(arch)
    modules = linear_modules(model)
    own = {name: (1, module.weight.shape[0] - 2) for name, module in modules.items()}  # a middle rank's rows, as stored
    context = PruningContext(model, None, calibration, "c4", None, 2, own)
    taylor, gblm = Taylor(), GBLM()
    taylor.prepare(context)
    gblm.prepare(context)
    means, squares = naive_mean_taylor(model, calibration), naive_gradient_squares(model, calibration)
    for name, module in modules.items():
        start, stop = own[name] if arch == "llama" else (0, module.weight.shape[0])
        for state, naive in ((taylor._means[name], means[name]), (gblm._squares[name], squares[name])):
            assert state.shape == (stop - start, module.weight.shape[1]), name
            reference = naive[start:stop].double()
            assert float((state.double() - reference).abs().max() / reference.abs().max()) < 1e-5, name


def test_gblm_metric_equals_its_definition(tiny_model):
    """|W| · (‖X‖/√N + α·√Σ_s g_s²) with g_s the gradient of row s's mean next-token loss, on the dense model."""
    calibration = torch.randint(4, 100, (4, 12), generator=torch.Generator().manual_seed(7))
    model, reference = tiny_model(), tiny_model()
    modules = linear_modules(reference)
    squares = naive_gradient_squares(reference, calibration)
    alpha = 100.0
    prune_sequential(model, calibration, [0.5, 0.5], metric=GBLM(alpha), batch_size=2)

    def score(name, weight, norm):
        gradient = weight_out_in(modules[name], squares[name]).sqrt()
        return weight.abs().double() * (norm.double()[None] / math.sqrt(4) + alpha * gradient)

    naive_prune(reference, calibration, [0.5, 0.5], batch_size=2, score=score, rel=1e-4)
    for (name, ours), theirs in zip(linear_modules(model).items(), modules.values(), strict=True):
        assert torch.equal(ours.weight == 0, theirs.weight == 0), name


def test_taylor_dense_scores_are_shared_by_runs_of_one_calibration_batch(monkeypatch, tiny_model):
    """A comparison prunes a fresh dense model per run: runs of one calibration batch reuse the scores,
    another batch computes its own."""
    from lit_activation.pruning.context import PruningContext
    from lit_activation.pruning.metrics import taylor

    passes = []
    original = taylor.calibration_means
    monkeypatch.setattr(taylor, "calibration_means", lambda *a, **k: passes.append(1) or original(*a, **k))
    metric, batch = Taylor(), torch.randint(4, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    for ids in (batch, batch, batch + 1):
        metric.prepare(PruningContext(tiny_model(), None, ids, "c4", None, 2))
    assert len(passes) == 2


def test_a_method_that_defines_neither_scores_nor_prune_says_so(tiny_model):
    from lit_activation.pruning.metrics import PruningMetric

    class Nothing(PruningMetric):
        pass

    with pytest.raises(NotImplementedError, match="^Nothing defines neither scores nor its own prune$"):
        prune_sequential(tiny_model(), torch.randint(4, 100, (2, 8)), [0.5, 0.5], metric=Nothing())
