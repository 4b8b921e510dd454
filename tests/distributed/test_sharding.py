"""Sharding that holds at scale, with gloo CPU processes: a shard group inside a replicated
layout (DP=2 × TP=2) on rows that do not divide evenly, each rank loading only its own rows, a
layout that shards nothing said so, and GPT-2's Conv1D pruned on shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.naive import naive_means, per_layer
from tests.helpers.processes import LLMDCOS, cli, counts_args, probe_records, sharded, write_model
from tests.helpers.tolerant import gap_threshold, parts_of

pytestmark = [pytest.mark.ddp, pytest.mark.slow]

# intermediate 37 and vocabulary 105 rows split 19/18 and 53/52 over a shard group of 2
UNEVEN = dict(intermediate_size=37, vocab_size=105)


@pytest.fixture(scope="module")
def uneven_model(tmp_path_factory) -> str:
    return str(write_model(tmp_path_factory.mktemp("uneven") / "model", **UNEVEN))


HSDP = ["--model.engine.checkpoint_blocks", "true"]


def test_dp2_tp2_counts_on_uneven_rows_with_recomputed_blocks_equal_one_process(tmp_path, bench_files, uneven_model):
    data = {"num_samples": 5, "batch_size": 2, "max_length": 40}
    means, layer_of, n_layers = naive_means(["boolq", "mmlu"], bench_files, data, uneven_model)
    gamma = gap_threshold([p for d in means.values() for p in parts_of(d)], 0.5)  # no mean within rounding of γ
    probe = ["--trainer.callbacks+", "tests.helpers.probe.ShardProbe", "--trainer.callbacks.out_dir", str(tmp_path / "probe")]
    one, _ = cli(tmp_path, "one", counts_args(bench_files, gamma), model=uneven_model)
    four, _ = cli(tmp_path, "four", [*counts_args(bench_files, gamma), *HSDP, *probe], 4, sharded(2, 2), model=uneven_model)
    one, four = (json.loads((run / "counts.json").read_text()) for run in (one, four))
    for name in ("boolq", "mmlu"):
        expected = [int((v > gamma).sum()) for v in per_layer(means[name], layer_of, n_layers)]
        assert one["datasets"][name]["layer_counts"] == four["datasets"][name]["layer_counts"] == expected
        assert one["datasets"][name]["module_counts"] == four["datasets"][name]["module_counts"]
        assert one["datasets"][name]["n_samples"] == four["datasets"][name]["n_samples"] == 5
    ranks = probe_records(tmp_path / "probe", 4)
    for name, sizes in ranks[0].items():  # ranks 2r and 2r+1 form a shard group: each holds its own rows, together all
        rows = [r[name]["weight_local"] for r in ranks]
        assert rows[0] + rows[1] == rows[2] + rows[3] == sizes["weight"] and rows[0] != 0, name
        assert [r[name]["state"] for r in ranks] == rows, name  # the accumulator: the same rows
    assert any(r[n]["weight_local"] != ranks[1][n]["weight_local"] for r in ranks[:1] for n in r)  # some split unevenly


def test_the_loss_target_on_shards_counts_as_one_process(tmp_path, bench_files, uneven_model):
    """D = the mean next-token loss is formed after the forward, from the final hidden states, by the
    head in chunks recomputed in the backward (engine/targets.py): on a shard group, where FSDP2
    holds the head, the counts of padded batches on uneven rows are the one-process ones and the naive loop's."""
    data = {"num_samples": 5, "batch_size": 2, "max_length": 40}
    means, layer_of, n_layers = naive_means(["boolq", "mmlu"], bench_files, data, uneven_model, target="loss")
    gamma = gap_threshold([p for d in means.values() for p in parts_of(d)], 0.5)  # no mean within rounding of γ
    args = [*counts_args(bench_files, gamma), "--model.engine.target", "loss"]
    one, _ = cli(tmp_path, "one", args, model=uneven_model)
    two, _ = cli(tmp_path, "two", args, 2, sharded(1, 2), model=uneven_model)
    one, two = (json.loads((run / "counts.json").read_text()) for run in (one, two))
    assert one["target"] == two["target"] == "loss"
    for name in ("boolq", "mmlu"):
        expected = [int((v > gamma).sum()) for v in per_layer(means[name], layer_of, n_layers)]
        assert one["datasets"][name]["layer_counts"] == two["datasets"][name]["layer_counts"] == expected
        assert one["datasets"][name]["module_counts"] == two["datasets"][name]["module_counts"]


def test_dp2_tp2_llmdcos_on_uneven_rows_with_recomputed_blocks_equals_one_process(tmp_path, bench_files, uneven_model):
    one, _ = cli(tmp_path, "one", LLMDCOS + ["--data.data_files", json.dumps({k: bench_files[k] for k in ("boolq", "gsm8k")})], model=uneven_model)
    four, _ = cli(
        tmp_path, "four", LLMDCOS + ["--data.data_files", json.dumps({k: bench_files[k] for k in ("boolq", "gsm8k")}), *HSDP], 4, sharded(2, 2),
        model=uneven_model,
    )
    one, four = (json.loads((run / "llmdcos.json").read_text()) for run in (one, four))
    assert one["llmdcos"].keys() == four["llmdcos"].keys()
    for pair in one["llmdcos"]:
        torch.testing.assert_close(torch.tensor(four["llmdcos"][pair]), torch.tensor(one["llmdcos"][pair]), rtol=0, atol=1e-6)


PRUNE = lambda files: [  # noqa: E731
    "--data.init_args.dataset", "wikitext2", "--data.init_args.data_files", files["wikitext2"], "--data.init_args.seqlen", "64",
    "--data.init_args.max_chunks", "2", "--pruning.calibration.dataset", "c4", "--pruning.calibration.files", files["c4"],
    "--pruning.calibration.samples", "4", "--pruning.calibration.seqlen", "32", "--pruning.calibration.batch_size", "2",
]


def saved_models_equal(tmp_path, runs: dict[str, dict]) -> None:
    """The saved pruned models of every layout are the one-process one, and something was pruned."""
    one = load_file(tmp_path / "saved_one" / "model.safetensors")
    for layout, record in runs.items():
        assert record["layer_sparsity"] == pytest.approx(runs["one"]["layer_sparsity"], abs=1e-12)
        assert record["achieved_sparsity"] == runs["one"]["achieved_sparsity"] > 0.4
        assert record["achieved_zero_fraction"] == pytest.approx(record["achieved_sparsity"], rel=1e-6)  # from dense weights (float sums vs counts)
        other = load_file(tmp_path / f"saved_{layout}" / "model.safetensors")
        assert one.keys() == other.keys()
        for key in one:
            assert torch.equal(one[key], other[key]), (layout, key)


ONE, TWO = ("one", 1, None), ("two", 2, sharded(1, 2))  # layouts: (name, processes, strategy)


def pruned(tmp_path, bench_files, model: str, layouts: tuple, extra: tuple[str, ...] = (), probe: bool = False) -> dict[str, dict]:
    """Each layout prunes `model` as configs/prune_owl_embedded.yaml says, on PRUNE's data, and saves
    it to saved_<name> (probe: MetricStateProbe writes probe_<name>); returns their pruning records."""
    config = Path(__file__).parents[2] / "configs" / "prune_owl_embedded.yaml"
    runs = {}
    for layout, devices, strategy in layouts:
        args = [*PRUNE(bench_files), *extra, "--pruning.save_dir", str(tmp_path / f"saved_{layout}")]
        if probe:
            args += ["--trainer.callbacks+", "tests.helpers.probe.MetricStateProbe", "--trainer.callbacks.out_dir", str(tmp_path / f"probe_{layout}")]
        run, _ = cli(tmp_path, layout, args, devices, strategy, "validate", config, model=model)
        runs[layout] = json.loads((run / "pruning.json").read_text())
    return runs


def test_dp2_tp2_pruning_on_uneven_rows_saves_the_one_process_model(tmp_path, bench_files, uneven_model):
    saved_models_equal(tmp_path, pruned(tmp_path, bench_files, uneven_model, (ONE, ("four", 4, sharded(2, 2)))))


def test_gpt2_conv1d_sharded_pruning_saves_the_one_process_model(tmp_path, bench_files):
    saved_models_equal(tmp_path, pruned(tmp_path, bench_files, "tiny-gpt2", (ONE, TWO)))


def pruned_with_state(tmp_path, bench_files, metric: str, model: str) -> tuple[dict, list, list]:
    """One process and a shard group of 2 prune `model` with `metric` (OWL sparsities); returns the
    two records, the one-process state (MetricStateProbe) and each rank's."""
    runs = pruned(tmp_path, bench_files, model, (ONE, TWO), ("--pruning.metric", metric), probe=True)
    assert runs["two"]["achieved_sparsity"] == runs["one"]["achieved_sparsity"] > 0.4
    return runs, probe_records(tmp_path / "probe_one", 1)[0], probe_records(tmp_path / "probe_two", 2)


def assert_taylor_masks(tmp_path, whole: dict, conv1d: bool) -> None:
    """Taylor prunes each output row's lowest mean scores: wherever the one-process scores cut a row
    clearly, the sharded run pruned the very same weights (a cut within rounding may fall either way)."""
    saved = {layout: load_file(tmp_path / f"saved_{layout}" / "model.safetensors") for layout in ("one", "two")}
    clear = rows = 0
    for name, one in whole.items():
        means, zeros, other = torch.tensor(one["state"]), saved["one"][f"{name}.weight"] == 0, saved["two"][f"{name}.weight"] == 0
        if conv1d:  # stored (in, out): an output row is a column
            means, zeros, other = means.t(), zeros.t(), other.t()
        for row in range(means.shape[0]):
            k, ordered = int(zeros[row].sum()), means[row].sort().values
            rows += 1
            if 0 < k < len(ordered) and ordered[k] - ordered[k - 1] > 1e-4 * ordered[k]:
                clear += 1
                assert torch.equal(zeros[row], other[row]), (name, row)
                assert torch.equal(zeros[row], means[row] <= ordered[k - 1]), (name, row)  # the lowest k, as the metric says
    assert clear > 0.8 * rows  # the comparison covered most rows


@pytest.mark.parametrize("metric", ["Taylor", "GBLM"])
def test_metrics_with_per_parameter_state_prune_on_shards_from_each_ranks_own_rows(tmp_path, bench_files, uneven_model, metric):
    """Taylor's mean scores and GBLM's gradient squares on a shard group of 2 (rows split 19/18):
    each rank keeps only its own rows, which together are the one-process state, and prunes by them."""
    _, whole, ranks = pruned_with_state(tmp_path, bench_files, metric, uneven_model)
    uneven = False
    for name, one in whole.items():
        first, second = ranks[0][name], ranks[1][name]
        assert first["own_rows"][0] == 0 and first["own_rows"][1] == second["own_rows"][0] == len(first["state"]), name
        assert second["own_rows"][1] == len(one["state"]) and len(second["state"]) == second["own_rows"][1] - second["own_rows"][0], name
        uneven |= len(first["state"]) != len(second["state"])
        torch.testing.assert_close(torch.tensor(first["state"] + second["state"]), torch.tensor(one["state"]), rtol=1e-5, atol=0)
    assert uneven  # some module's rows split unevenly
    if metric == "Taylor":  # GBLM's scores also weigh the inputs' norms: its masks follow from the state checked above
        assert_taylor_masks(tmp_path, whole, conv1d=False)


def test_taylor_on_shards_of_gpt2_keeps_each_conv1d_state_whole_on_every_rank(tmp_path, bench_files):
    """A Conv1D is pruned on its gathered weight: every rank scores and keeps all of its rows."""
    _, whole, ranks = pruned_with_state(tmp_path, bench_files, "Taylor", "tiny-gpt2")
    for name, one in whole.items():
        assert ranks[0][name]["own_rows"] != ranks[1][name]["own_rows"], name  # the weights themselves are split
        for rank in ranks:
            torch.testing.assert_close(torch.tensor(rank[name]["state"]), torch.tensor(one["state"]), rtol=1e-5, atol=0)
    assert_taylor_masks(tmp_path, whole, conv1d=True)


@pytest.mark.parametrize("tied", [False, True], ids=["own-head", "tied-head"])
def test_each_rank_loads_only_its_rows(tmp_path, bench_files, tied):
    """A 2-rank shard group: each process's resident memory grows, while the model loads, by its
    half of the weights (at least 0.4 of them: the probe does see the shard) and stays below 0.75 of
    them: no rank ever holds the whole model, also when the head is tied to the embeddings (saved
    once, as the embeddings: each rank reads the head's own rows from that tensor). Measured by the
    kernel (VmHWM), not by FSDP. The counts equal one process's."""
    big = write_model(tmp_path / "big", hidden_size=512, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                      vocab_size=16000, tie_word_embeddings=tied)  # a head of 8 M parameters: a copy of it would show
    stored = load_file(big / "model.safetensors")
    assert ("lm_head.weight" in stored) != tied  # a tied head is saved once, as the embeddings
    size = sum(t.numel() * t.element_size() for t in stored.values())
    assert size > 80 * 2**20  # precondition: large enough that allocator noise does not matter
    args = ["--data", "lit_activation.data.datamodule.ActivationDataModule", "--data.datasets", "[boolq]", "--data.num_samples", "2",
            "--data.max_length", "8", "--data.data_files", json.dumps({"boolq": bench_files["boolq"]}),
            "--trainer.callbacks+", "lit_activation.callbacks.counts.ActivationCounts", "--trainer.callbacks.gamma", "1e-9"]
    probe = ["--trainer.callbacks+", "tests.helpers.probe.LoadMemoryProbe", "--trainer.callbacks.out_dir", str(tmp_path / "two")]
    two, stderr = cli(tmp_path, "two", [*args, *probe], 2, sharded(1, 2), model=str(big), fresh=True)  # resident memory: new processes
    assert "through rank 0" not in stderr
    for rank in probe_records(tmp_path / "two", 2):
        grew = rank["peak"] - rank["baseline"]
        assert 0.4 * size < grew < 0.75 * size, f"a rank grew by {grew / 2**20:.0f} MiB loading {size / 2**20:.0f} MiB"
    one, _ = cli(tmp_path, "one", args, model=str(big))
    one, two = (json.loads((run / "counts.json").read_text())["datasets"]["boolq"] for run in (one, two))
    assert one["layer_counts"] == two["layer_counts"] and one["module_counts"] == two["module_counts"]


def test_a_layout_that_shards_nothing_says_so_and_runs_as_replicas(tmp_path, bench_files):
    data = {"num_samples": 5, "batch_size": 2, "max_length": 40}
    means, layer_of, n_layers = naive_means(["boolq", "mmlu"], bench_files, data)
    gamma = gap_threshold([p for d in means.values() for p in parts_of(d)], 0.5)
    run, stderr = cli(tmp_path, "replicas", counts_args(bench_files, gamma), 2, sharded(2, 1))
    assert stderr.count("tensor_parallel_size 1 shards nothing: each of the 2 devices holds a full copy") == 1
    assert "set tensor_parallel_size: 2" in stderr
    counts = json.loads((run / "counts.json").read_text())
    for name in ("boolq", "mmlu"):
        assert counts["datasets"][name]["layer_counts"] == [int((v > gamma).sum()) for v in per_layer(means[name], layer_of, n_layers)]
