"""A model the user holds: prune_model prunes it in place as the validate run does, and perplexity measures
it; both against computations written out independently here."""

from __future__ import annotations

import math

import pytest
import torch

from lit_activation import Calibration, perplexity, prune_model
from lit_activation.data.samples import evaluation_stream
from lit_activation.models.layers import decoder_layers, layer_index, linear_modules
from lit_activation.pruning.allocations import Activation, GivenCounts, Uniform
from lit_activation.pruning.metrics import Magnitude, Wanda
from tests.helpers.naive import paper_formula

CALIBRATION = Calibration("news", samples=4, seqlen=32)


def test_perplexity_is_exp_of_the_mean_next_token_loss_of_the_chunks(tiny_model, tiny_tok, bench_files):
    model, corpus = tiny_model(layers=2), {"dataset": "wikitext2", "data_files": bench_files["wikitext2"], "seqlen": 32}
    stream = evaluation_stream("wikitext2", tiny_tok, bench_files["wikitext2"])
    chunks = stream[: 3 * 32].view(3, 32)
    with torch.no_grad():  # Hugging Face's own loss: the mean NLL of a chunk's 31 next tokens, the chunks equal in count
        naive = math.exp(sum(float(model(input_ids=c[None], labels=c[None]).loss) for c in chunks) / 3)
    assert perplexity(model, tiny_tok, max_chunks=3, **corpus) == pytest.approx(naive, rel=1e-5)
    assert perplexity(model, tiny_tok, max_chunks=3, batch_size=2, **corpus) == pytest.approx(naive, rel=1e-5)
    model.train()
    perplexity(model, tiny_tok, max_chunks=1, **corpus)
    assert model.training  # its mode is given back


def test_magnitude_pruning_of_a_held_model_zeroes_the_smallest_weights_of_every_row(tiny_model, tiny_tok):
    model = tiny_model(layers=2)
    expected = {}
    for name, module in linear_modules(model).items():  # per row, the int(0.5 × inputs) smallest |w| go
        w = module.weight.detach().clone()
        k = int(w.shape[1] * 0.5)
        drop = w.abs().argsort(dim=1)[:, :k]
        expected[name] = w.scatter(1, drop, 0.0)
    record = prune_model(model, tiny_tok, 0.5, Uniform(), Magnitude(), CALIBRATION)
    for name, module in linear_modules(model).items():
        assert torch.equal(module.weight, expected[name]), name
    assert record["layer_sparsity"] == [0.5, 0.5] and record["achieved_sparsity"] == pytest.approx(0.5)
    assert record["method"] == Uniform().label and record["metric"] == Magnitude().label and record["calibration"]["dataset"] == "news"


def test_the_papers_allocation_on_a_held_model_prunes_each_layer_as_its_formula_says(tiny_model, tiny_tok):
    model = tiny_model(layers=4)
    counts = [120.0, 80.0, 100.0, 60.0]
    record = prune_model(model, tiny_tok, 0.5, Activation(GivenCounts(counts)), Wanda(), CALIBRATION)
    targets = paper_formula(counts, 0.5)
    assert record["layer_sparsity"] == pytest.approx(targets, rel=1e-12)
    prefix, _ = decoder_layers(model)
    zeros, sizes = [0] * 4, [0] * 4
    for name, module in linear_modules(model).items():  # each row keeps all but int(target × inputs) weights
        layer = layer_index(name, prefix)
        rows, inputs = module.weight.shape
        assert int((module.weight == 0).sum()) == rows * int(inputs * targets[layer]), name
        zeros[layer] += int((module.weight == 0).sum())
        sizes[layer] += module.weight.numel()
    assert record["layer_zero_fraction"] == pytest.approx([z / s for z, s in zip(zeros, sizes, strict=True)])


@pytest.mark.parametrize(("options", "message"), [
    (dict(sparsity=1.0), r"Sparsity 1.0 is outside \[0, 1\)"),
    (dict(sparsity=0.5, allocation="uniform"), r"allocation 'uniform' is not an allocation; accepted: Uniform"),
    (dict(sparsity=0.5, metric=Magnitude, allocation=Uniform()), r"is not a pruning metric; accepted: Wanda"),
    (dict(sparsity=0.5, nm="2:4", allocation=Activation(GivenCounts([1.0, 2.0]))), r"N:M pruning fixes every layer at n/m; allocation must be Uniform"),
    (dict(sparsity=0.5, allocation=Activation(GivenCounts([1.0, 2.0, 3.0]))), r"GivenCounts has 3 counts; .* has 2 decoder layers"),
])
def test_a_pruning_that_cannot_be_is_refused_before_the_model_changes(tiny_model, tiny_tok, options, message):
    model = tiny_model(layers=2)
    before = {n: p.clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=message):
        prune_model(model, tiny_tok, calibration=CALIBRATION, **options)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
