"""SparseGPT against the paper's equations computed naively (tests/helpers/naive.py: fp64, explicit
inverses, one column at a time): masks equal, weights within fp32 rounding, on a random matrix and
sequentially on tiny models; the lazy block size changes no mask; dead inputs, damping, ties, the
achieved sparsity, a shard group's rows, bad options, and a whole run through the CLI."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from lit_activation.distributed.shards import Shards
from lit_activation.models.layers import decoder_layers, layer_index, linear_modules, weight_out_in
from lit_activation.pruning.metrics import SparseGPT
from lit_activation.pruning.metrics.sparsegpt import dampen, gathered_lowest_k, lowest_k, lowest_n_per_row, obs_prune, pruned_count
from lit_activation.pruning.prune import prune_sequential
from lit_activation.pruning.sequential import capture_first_block_inputs, input_hessians
from tests.helpers.naive import input_sums, naive_sparsegpt

# fp32 (H, its Cholesky factors, c rank-one updates) against fp64: at most 1.2e-5 of a module's
# largest weight measured here (GPT-2's 128-wide c_proj), 4x below this bound; the updates
# themselves move the kept weights by ~1e-1 of it, so a wrong update cannot pass.
WEIGHT_TOL = 5e-5
GAP = 1e-4  # how far apart (relative) the saliencies at every cut must be in the naive run: no rounding can swap them


def random_problem(rows: int = 24, columns: int = 96, tokens: int = 300, seed: int = 0, dead: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(W fp32, X fp64): inputs of unequal scales, so that H is far from a multiple of the identity."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, columns, generator=g, dtype=torch.float64) * (0.2 + 2 * torch.rand(columns, generator=g, dtype=torch.float64))
    x[:, list(dead)] = 0.0
    return torch.randn(rows, columns, generator=g), x


def hessian32(x: torch.Tensor) -> torch.Tensor:
    """H = 2·XᵀX as the hooks form it: fp32."""
    x = x.float()
    return torch.zeros(x.shape[1], x.shape[1]).addmm_(x.t(), x, alpha=2)


def linear(weight: torch.Tensor) -> nn.Linear:
    module = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        module.weight.copy_(weight)
    return module


def sparsegpt_once(weight: torch.Tensor, x: torch.Tensor, sparsity: float, nm: tuple[int, int] = (0, 0), **options) -> tuple[torch.Tensor, float]:
    """SparseGPT.prune on one Linear holding `weight`: (the pruned weight, the fraction it reports)."""
    module = linear(weight)
    fraction = SparseGPT(**options).prune("m", module, hessian32(x), sparsity, nm[0], nm[1], None)
    return module.weight.detach().clone(), fraction


def assert_close_to_naive(ours: torch.Tensor, expected: torch.Tensor, mask: torch.Tensor, where: str = "") -> None:
    assert torch.equal(ours == 0, mask), f"{where}: the masks differ"
    scale = float(expected.abs().max())
    assert float((ours.double() - expected).abs().max()) <= WEIGHT_TOL * scale, where


@pytest.mark.parametrize(
    ("sparsity", "nm", "mask_group", "blocksize"),
    [(0.5, (0, 0), 128, 128), (0.7, (0, 0), 32, 20), (0.3, (0, 0), 40, 128), (0.5, (2, 4), 128, 128), (0.5, (2, 4), 128, 7), (0.5, (4, 8), 128, 32)],
)
def test_a_random_matrix_is_pruned_as_the_paper_s_equations_say(sparsity, nm, mask_group, blocksize):
    """Mask groups that the lazy blocks straddle (32 columns in blocks of 20, N:M groups in blocks of 7)
    and a last group narrower than the others (96 = 2·40 + 16)."""
    weight, x = random_problem()
    ours, fraction = sparsegpt_once(weight, x, sparsity, nm, blocksize=blocksize, mask_group=mask_group)
    expected, mask = naive_sparsegpt(weight, 2 * x.T @ x, sparsity, nm, mask_group, gap=GAP)
    assert_close_to_naive(ours, expected, mask)
    assert fraction == float(mask.double().mean())


def test_the_lazy_block_size_changes_no_mask_and_the_weights_only_by_rounding():
    weight, x = random_problem(columns=96, seed=3)
    for nm, sparsity in (((0, 0), 0.6), ((2, 4), 0.5)):
        runs = {size: sparsegpt_once(weight, x, sparsity, nm, blocksize=size, mask_group=32)[0] for size in (1, 8, 20, 32, 128, 500)}
        reference = runs[1]  # no lazy batching at all: every update applied at once
        for size, pruned in runs.items():
            assert torch.equal(pruned == 0, reference == 0), (nm, size)
            assert float((pruned - reference).abs().max()) <= WEIGHT_TOL * float(reference.abs().max()), (nm, size)
        assert any(not torch.equal(pruned, reference) for pruned in runs.values())  # the sizes did run other code paths


def test_kept_weights_are_updated_and_the_sparsity_is_exact_per_group():
    """⌊rows · width · s⌋ weights of every mask group, 24 × 32 × 0.7 = 537.6 -> 537 each, the rows
    unequal; a kept weight moves exactly when a weight before it in its row was pruned (its error
    reaches only the columns after it), and by far more than the rounding bound."""
    weight, x = random_problem(rows=24, columns=96)
    ours, fraction = sparsegpt_once(weight, x, 0.7, mask_group=32)
    zeros = (ours == 0).view(24, 3, 32).sum(dim=(0, 2))
    assert zeros.tolist() == [537, 537, 537] and fraction == 3 * 537 / (24 * 96) == pruned_count(24, 96, 0.7, mask_group=32) / (24 * 96)
    per_row = (ours == 0).sum(1)
    assert per_row.min() < per_row.max()  # one threshold per group across rows, not per row (unlike Wanda)
    updated = assert_reconstructed(ours, weight)
    assert int(updated.sum()) > 0.9 * int((ours != 0).sum())
    assert float(((ours - weight).abs()[updated] / weight.abs().max()).median()) > 100 * WEIGHT_TOL


def assert_reconstructed(pruned: torch.Tensor, dense: torch.Tensor, where: str = "") -> torch.Tensor:
    """A kept weight moved exactly when a weight before it in its row was pruned (an error reaches
    only the columns after it); returns where that is."""
    kept = pruned != 0
    after_a_pruned_one = ((~kept).cumsum(1) - (~kept).int()) > 0
    assert torch.equal(pruned[kept & ~after_a_pruned_one], dense[kept & ~after_a_pruned_one]), where
    assert bool((pruned != dense)[kept & after_a_pruned_one].all()), where
    return kept & after_a_pruned_one
    assert pruned_count(8, 10, 0.5, n=2, m=5) == 8 * 2 * 2 and pruned_count(4, 10, 0.5, mask_group=4) == 8 + 8 + 4


def test_ties_go_to_the_lower_row_then_the_lower_column():
    saliency = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # four zeros tie; k = ⌊6 · 0.5⌋ = 3
    assert lowest_k(saliency, 0.5).tolist() == [[False, True, True], [True, False, False]]
    assert lowest_k(saliency, 0.1).tolist() == [[False] * 3, [False] * 3]  # ⌊0.6⌋ = 0
    assert lowest_n_per_row(torch.tensor([[3.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]), 2).tolist() == [
        [False, True, True, False], [True, True, False, False]]


def test_dead_inputs_get_a_unit_diagonal_and_zero_weights():
    h = torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 4.0]])
    dead = dampen(h, 0.1)
    damp = 0.1 * (1 + 2 + 4) / 3  # λ from the diagonal after the dead input's 1
    assert dead.tolist() == [True, False, False]
    torch.testing.assert_close(h, torch.tensor([[1 + damp, 0.0, 0.0], [0.0, 2 + damp, 1.0], [0.0, 1.0, 4 + damp]]), rtol=0, atol=1e-7)
    weight, x = random_problem(columns=64, dead=(5, 40, 41))
    for nm, sparsity in (((0, 0), 0.5), ((2, 4), 0.5)):
        ours, _ = sparsegpt_once(weight, x, sparsity, nm, mask_group=32)
        expected, mask = naive_sparsegpt(weight, 2 * x.T @ x, sparsity, nm, 32, gap=0)  # the dead weights tie at 0: the rule decides
        assert_close_to_naive(ours, expected, mask, str(nm))
        assert bool((ours[:, [5, 40, 41]] == 0).all()) and bool(mask[:, [5, 40, 41]].all())  # saliency 0: pruned first, within the count


def test_damping_follows_percdamp_and_a_singular_h_without_it_is_refused():
    weight, x = random_problem(columns=48, tokens=60)  # barely more tokens than inputs: H invertible but ill-conditioned, so λ matters
    results = {}
    for percdamp in (0.0, 0.01, 0.5):
        ours, _ = sparsegpt_once(weight, x, 0.5, percdamp=percdamp, mask_group=16)
        expected, mask = naive_sparsegpt(weight, 2 * x.T @ x, 0.5, mask_group=16, percdamp=percdamp, gap=GAP)
        assert_close_to_naive(ours, expected, mask, f"percdamp {percdamp}")
        results[percdamp] = ours
    assert not torch.equal(results[0.01] == 0, results[0.5] == 0)  # λ reaches the result
    twins = x.clone()
    twins[:, 1] = twins[:, 0]  # two equal inputs: H is singular, and λ = 0 leaves it so
    with pytest.raises(ValueError, match=r"^m: H \+ λI is not positive definite \(percdamp 0.0\); raise percdamp$"):
        sparsegpt_once(weight, twins, 0.5, percdamp=0.0)
    sparsegpt_once(weight, twins, 0.5, percdamp=0.01)  # damped, it is not


def test_h_is_twice_the_gram_matrix_of_every_calibration_token(tiny_model):
    model = tiny_model()
    ids = torch.randint(4, 100, (5, 12), generator=torch.Generator().manual_seed(1))
    _, layers = decoder_layers(model)
    grams = {}

    def hook(name):
        def fn(module, args, output):
            rows = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            grams[name] = grams.get(name, 0.0) + 2 * rows.T @ rows

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in layers[0].named_modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in handles:
        h.remove()
    with torch.no_grad():
        ours = input_hessians(layers[0], capture_first_block_inputs(model, ids, batch_size=2))
    assert ours.keys() == grams.keys()
    for name, h in ours.items():
        assert h.dtype == torch.float32
        torch.testing.assert_close(h.double(), grams[name], rtol=1e-5, atol=1e-5 * float(grams[name].abs().max()))


def naive_sequential(model, calibration: torch.Tensor, sparsity: list[float], nm: tuple[int, int], mask_group: int, batch_size: int = 2) -> None:
    """Layer by layer: a whole-model forward (earlier layers already pruned) with hooks forming each of
    this layer's modules' H in fp64, then each module pruned by naive_sparsegpt."""
    _, layers = decoder_layers(model)
    modules = linear_modules(model)
    for index in range(len(layers)):
        mine = {name: module for name, module in modules.items() if f".{index}." in name}
        grams = input_sums(model, mine, calibration, batch_size, lambda x: 2 * x.T @ x)
        with torch.no_grad():
            for name, module in mine.items():
                pruned, _ = naive_sparsegpt(weight_out_in(module), grams[name], sparsity[index], nm, mask_group, gap=GAP)
                weight_out_in(module).copy_(pruned)


# calibration seeds whose saliencies sit clear of every cut (the naive run asserts it; GPT-2's 2:4 cuts
# ~6000 groups of four, and seed 0 puts two of one group within 2e-5 of each other)
@pytest.mark.parametrize(("arch", "nm", "seed"), [("llama", (0, 0), 0), ("llama", (2, 4), 0), ("gpt2", (0, 0), 0), ("gpt2", (2, 4), 1), ("opt", (0, 0), 0)])
def test_sequential_sparsegpt_on_tiny_models_equals_the_naive_layer_loop(arch, nm, seed, tiny_model):
    """Real calibration capture, block by block, each block's inputs from the pruned blocks before it;
    GPT-2's Conv1D pruned in its (out, in) view and stored back as (in, out)."""
    calibration = torch.randint(4, 100, (6, 16), generator=torch.Generator().manual_seed(seed))
    sparsity = [0.5, 0.5] if nm[1] else [0.5, 0.3]
    ours, reference, dense = tiny_model(arch), tiny_model(arch), tiny_model(arch)
    fractions = prune_sequential(ours, calibration, sparsity, *nm, metric=SparseGPT(blocksize=8, mask_group=16), batch_size=2)
    naive_sequential(reference, calibration, sparsity, nm, mask_group=16)
    for (name, a), b, d in zip(linear_modules(ours).items(), linear_modules(reference).values(), linear_modules(dense).values(), strict=True):
        mine, theirs = weight_out_in(a).detach(), weight_out_in(b).detach()
        assert_close_to_naive(mine, theirs.double(), theirs == 0, name)
        assert fractions[name] == float((theirs == 0).double().mean()), name
        assert_reconstructed(mine, weight_out_in(d).detach(), name)  # reconstructed, not only masked


class Exchange:
    """An all-reduce sum between threads standing for the ranks of a shard group."""

    def __init__(self, ranks: int) -> None:
        self.barrier, self.parts = threading.Barrier(ranks), [None] * ranks

    def shards(self, rank: int) -> Shards:
        def total(tensor: torch.Tensor) -> torch.Tensor:
            self.parts[rank] = tensor.clone()
            self.barrier.wait()
            out = torch.stack(self.parts).sum(0)
            self.barrier.wait()  # every rank has read the parts before any overwrites them
            return out

        return Shards(sum=total)


def test_a_shard_group_s_ranks_select_the_one_process_mask_from_their_own_rows():
    """Two ranks, rows 13 + 12 (uneven, as torch.chunk splits 25), each updating its own rows with the
    same H; each unstructured group's ⌊25 · 32 · s⌋ lowest are chosen over both ranks' rows, so the
    masks are the one process's (a per-rank threshold would give each rank its own count)."""
    weight, x = random_problem(rows=25, columns=64, seed=7)
    h = hessian32(x)
    dampen(h, 0.01)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    expected, mask = naive_sparsegpt(weight, 2 * x.T @ x, 0.6, mask_group=32, gap=GAP)
    exchange, parts, errors = Exchange(2), {}, []

    def rank(r: int, start: int, stop: int) -> None:
        try:
            part = weight[start:stop].clone()
            obs_prune(part, hinv, 0.6, blocksize=20, mask_group=32, select=gathered_lowest_k(25, start, exchange.shards(r)))
            parts[r] = part
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            errors.append(err)
            exchange.barrier.abort()

    threads = [threading.Thread(target=rank, args=args) for args in ((0, 0, 13), (1, 13, 25))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    both = torch.cat([parts[0], parts[1]])
    assert_close_to_naive(both, expected, mask)
    assert (mask[:13].sum(), mask[13:].sum()) != (int(13 * 64 * 0.6), int(12 * 64 * 0.6))  # per-rank counts would differ
    one = weight.clone()
    obs_prune(one, hinv, 0.6, blocksize=20, mask_group=32)
    assert torch.equal(one == 0, both == 0)


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        ({"blocksize": 1}, True), ({"blocksize": 0}, False), ({"blocksize": -3}, False), ({"blocksize": 1.5}, False), ({"blocksize": True}, False),
        ({"mask_group": 1}, True), ({"mask_group": 0}, False), ({"percdamp": 0.0}, True), ({"percdamp": -1e-9}, False),
        ({"percdamp": math.nan}, False), ({"percdamp": math.inf}, False),
    ],
)
def test_options_at_and_just_past_their_bounds(options, accepted):
    if accepted:
        SparseGPT(**options)
        return
    (name, value), = options.items()
    with pytest.raises(ValueError, match=rf"^SparseGPT {name} must be .*, got {value!r}$"):
        SparseGPT(**options)


def test_an_nm_pattern_that_does_not_divide_the_inputs_is_refused():
    weight, x = random_problem(columns=30)
    with pytest.raises(ValueError, match=r"^N:M with m=4 needs in_features divisible by m, got 30 \(m\)$"):
        sparsegpt_once(weight, x, 0.5, (2, 4))


CONFIGS = Path(__file__).parents[2] / "configs"


def validate(tmp_path: Path, name: str, *args: str) -> tuple[dict, Path]:
    from lit_activation.cli import build_cli

    saved = tmp_path / f"saved_{name}"
    build_cli([
        "validate", "--config", str(CONFIGS / "prune_embedded.yaml"), "--model.model", "tiny-llama", "--pruning.metric", "SparseGPT",
        "--data.init_args.max_chunks", "2", "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.name", name, "--pruning.save_dir", str(saved), *args,
    ])
    return json.loads((tmp_path / name / "version_0" / "pruning.json").read_text()), saved


@pytest.mark.slow
def test_sparsegpt_through_the_cli_with_an_allocation_two_of_four_and_a_saved_model(tmp_path, tiny_model):
    from transformers import AutoModelForCausalLM

    dense = linear_modules(tiny_model())
    for name, args in (("alpha", ("--pruning.allocation", "AlphaPruning")), ("nm", ("--pruning.allocation", "Uniform", "--pruning.nm", "2:4"))):
        record, saved = validate(tmp_path, name, *args)
        assert record["metric"] == "sparsegpt" and record["metric_options"] == {"metric": "sparsegpt", "blocksize": 128, "mask_group": 128, "percdamp": 0.01}
        reloaded = linear_modules(AutoModelForCausalLM.from_pretrained(saved))
        shapes = {n: m.weight.shape for n, m in reloaded.items()}
        if name == "nm":
            assert all(bool(((m.weight == 0).view(m.weight.shape[0], -1, 4).sum(-1) == 2).all()) for m in reloaded.values())
            assert record["achieved_sparsity"] == pytest.approx(0.5, abs=1e-12)
        else:
            assert record["allocation"]["method"] == "alphapruning" and len(set(record["layer_sparsity"])) == 2
            expected = sum(pruned_count(*shapes[n], record["layer_sparsity"][layer_index(n, "model.layers")]) for n in shapes)
            assert sum(int((m.weight == 0).sum()) for m in reloaded.values()) == expected
        for n, m in reloaded.items():  # the kept weights were reconstructed, not only masked
            assert_reconstructed(m.weight.detach(), dense[n].weight.detach(), f"{name} {n}")


@pytest.mark.ddp
@pytest.mark.slow
@pytest.mark.parametrize("model", ["uneven", "tiny-gpt2"])
def test_a_shard_group_of_two_processes_prunes_as_one_process(model, tmp_path, bench_files):
    """FSDP2 over 2 gloo processes: each rank updates its own rows of a Linear (intermediate 37 rows
    split 19/18) with the same H and selects each mask group over both ranks' rows; GPT-2's Conv1D is
    gathered and pruned whole on each rank. The saved model has the one process's masks and its
    weights within fp32 rounding (the ranks' updates run on other row blocks)."""
    from safetensors.torch import load_file

    from tests.helpers.processes import cli, sharded, write_model

    path = str(write_model(tmp_path / "uneven", intermediate_size=37, vocab_size=105)) if model == "uneven" else model
    args = [
        "--data.init_args.dataset", "wikitext2", "--data.init_args.data_files", bench_files["wikitext2"], "--data.init_args.seqlen", "64",
        "--data.init_args.max_chunks", "2", "--pruning.calibration.dataset", "c4", "--pruning.calibration.files", bench_files["c4"],
        "--pruning.calibration.samples", "4", "--pruning.calibration.seqlen", "32", "--pruning.calibration.batch_size", "2",
        "--pruning.allocation", "Uniform", "--pruning.sparsity", "0.6", "--pruning.metric", "SparseGPT", "--pruning.metric.init_args.mask_group", "16",
    ]
    saved = {}
    for name, devices, strategy in (("one", 1, None), ("two", 2, sharded(1, 2))):
        save = ["--pruning.save_dir", str(tmp_path / f"saved_{name}")]
        cli(tmp_path, name, [*args, *save], devices, strategy, "validate", CONFIGS / "prune_embedded.yaml", path)
        saved[name] = load_file(tmp_path / f"saved_{name}" / "model.safetensors")
    one, two = saved["one"], saved["two"]
    assert one.keys() == two.keys()
    pruned = [k for k in one if (".layers." in k or ".h." in k) and k.endswith("weight") and one[k].dim() == 2]
    assert pruned and all(float((one[k] == 0).double().mean()) > 0.5 for k in pruned)
    for key in one:
        assert torch.equal(one[key] == 0, two[key] == 0), key
        assert float((one[key] - two[key]).abs().max()) <= WEIGHT_TOL * float(one[key].abs().max()), key
