"""A mixture of experts on a shard group of 2 gloo CPU processes: each rank holds and scores its rows of
every expert, reads only them from the checkpoint (per-expert keys or fused tensors), and the counts
and LLMDcos equal the fp64 per-sample loop's."""

from __future__ import annotations

import json

import pytest
import torch

from lit_activation.analyses.similarity import pair_rows
from lit_activation.data.datamodule import ActivationDataModule
from lit_activation.models.experts import ExpertSlice
from lit_activation.models.layers import decoder_layers, layer_map, module_kind, scored_modules
from lit_activation.models.loading import load_causal_lm
from lit_activation.models.tiny import tiny_model, tiny_tokenizer
from tests.helpers.naive import naive_unit_scores
from tests.helpers.processes import LLMDCOS, cli, counts_args, probe_records, sharded
from tests.helpers.tolerant import gap_threshold, near_threshold, parts_of

pytestmark = [pytest.mark.ddp, pytest.mark.slow]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Saved tiny models: Mixtral (transformers writes its experts back as per-expert w1/w3/w2 keys under
    block_sparse_moe) and gpt-oss (fused, transposed, interleaved, biased tensors)."""
    out = {}
    for arch in ("mixtral", "gpt_oss"):
        directory = tmp_path_factory.mktemp(arch)
        tiny_model(arch).save_pretrained(directory)
        tiny_tokenizer().save_pretrained(directory)
        out[arch] = str(directory)
    return out


def naive_counts(model_dir: str, files: dict[str, str]) -> tuple[dict, dict, float]:
    """Per dataset the fp64 mean scores per unit of counts_args' samples, each unit's kind and layer, and a
    γ in a gap of them."""
    data = ActivationDataModule(["boolq", "mmlu"], tokenizer=model_dir, data_files=files, num_samples=5, batch_size=2, max_length=40)
    data.setup()
    model, _ = load_causal_lm(model_dir)
    means = {}
    for d, name in enumerate(data.dataset_names):
        per = [naive_unit_scores(model, torch.tensor(g.rows[0])) for g in data.groups if g.datasets[0] == d]
        means[name] = {n: torch.stack([p[n] for p in per]).mean(0) for n in per[0]}
    gamma = gap_threshold([p for d in means.values() for p in parts_of(d)], 0.5)
    return means, model, gamma


@pytest.mark.parametrize("arch", ["mixtral", "gpt_oss"])
def test_two_ranks_count_every_expert_as_the_naive_loop(tmp_path, bench_files, saved, arch):
    means, model, gamma = naive_counts(saved[arch], bench_files)
    probe = ["--trainer.callbacks+", "tests.helpers.probe.ShardProbe", "--trainer.callbacks.out_dir", str(tmp_path / "probe")]
    run, stderr = cli(tmp_path, "two", [*counts_args(bench_files, gamma), *probe, "--verbose"], 2, sharded(1, 2), model=saved[arch])
    assert "through rank 0" not in stderr  # each rank read its own rows, also of per-expert checkpoint keys
    result = json.loads((run / "counts.json").read_text())
    prefix, _ = decoder_layers(model)
    layer_of, kind_of, _ = layer_map(model)
    for name, unit_means in means.items():
        got = result["datasets"][name]
        for unit, mean in unit_means.items():
            slack = near_threshold(parts_of({unit: mean}), gamma)
            assert abs(got["module_counts"][kind_of[unit]][layer_of[unit]] - int((mean > gamma).sum())) <= slack, (name, unit)
        assert set(got["experts"]["per_layer"]) == {"0", "1"}
    ranks = probe_records(tmp_path / "probe", 2)
    experts = [n for n, u in scored_modules(model).items() if isinstance(u, ExpertSlice)]
    assert experts and module_kind(experts[0], prefix).startswith("mlp.experts.")
    for unit in experts:  # every rank holds its rows of every expert, the two together all of them
        held = [r[unit]["weight_local"] for r in ranks]
        assert held[0] + held[1] == ranks[0][unit]["weight"] and 0 < held[0] < ranks[0][unit]["weight"], unit
        assert [r[unit]["state"] for r in ranks] == held, unit


def test_two_ranks_llmdcos_of_a_mixture_of_experts_equals_the_naive_loop(tmp_path, bench_files, saved):
    """LLMDcos pairs (boolq, gsm8k) on a shard group: per layer, every unit of the layer concatenated,
    the experts' partial tiles included, as the fp64 loop over each pair's two samples."""
    files = json.dumps({k: bench_files[k] for k in ("boolq", "gsm8k")})
    run, _ = cli(tmp_path, "two", [*LLMDCOS, "--data.data_files", files], 2, sharded(1, 2), model=saved["mixtral"])
    result = json.loads((run / "llmdcos.json").read_text())["llmdcos"]
    data = ActivationDataModule(
        ["boolq", "gsm8k"], tokenizer=saved["mixtral"], data_files=bench_files, mode="pairs", num_samples=3, batch_size=1, max_length=40,
    )
    data.setup()
    model, _ = load_causal_lm(saved["mixtral"])
    layer_of, _, n_layers = layer_map(model)
    for key, (x, y) in {"boolq-boolq": (0, 0), "boolq-gsm8k": (0, 1), "gsm8k-gsm8k": (1, 1)}.items():
        i, j = pair_rows(x, y)
        for g, group in enumerate(data.groups):
            a, b = (naive_unit_scores(model, torch.tensor(group.rows[r])) for r in (i, j))
            for layer in range(n_layers):
                va = torch.cat([a[n].flatten() for n in a if layer_of[n] == layer])
                vb = torch.cat([b[n].flatten() for n in b if layer_of[n] == layer])
                expected = float(va @ vb / (va.norm() * vb.norm()))
                assert result[key][g][layer] == pytest.approx(expected, rel=1e-5), (key, g, layer)


def test_two_ranks_prune_a_mixture_of_experts_as_one_process(tmp_path, bench_files, saved):
    """OWL + Wanda inside the experts of Mixtral (row shards of every expert, per-expert checkpoint keys):
    the two ranks' saved model is the one process's, bit for bit."""
    from tests.distributed.test_sharding import ONE, TWO, pruned, saved_models_equal

    runs = pruned(tmp_path, bench_files, saved["mixtral"], (ONE, TWO))
    assert runs["two"]["expert_tokens"] == runs["one"]["expert_tokens"] and runs["one"]["expert_tokens"]
    saved_models_equal(tmp_path, runs)


def test_two_ranks_prune_gpt_oss_experts_with_sparsegpt_as_one_process(tmp_path, bench_files, saved):
    """SparseGPT inside gpt-oss's transposed experts: each rank gathers an expert's slice, solves it whole
    and keeps its own stored rows; the masks are the one process's and the weights within fp32 rounding."""
    from safetensors.torch import load_file

    from tests.distributed.test_sharding import ONE, TWO, pruned

    pruned(tmp_path, bench_files, saved["gpt_oss"], (ONE, TWO), ("--pruning.metric", "SparseGPT", "--pruning.allocation", "Uniform"))
    one, two = (load_file(tmp_path / f"saved_{layout}" / "model.safetensors") for layout in ("one", "two"))
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key] == 0, two[key] == 0), key
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5 * float(one[key].abs().max()))
