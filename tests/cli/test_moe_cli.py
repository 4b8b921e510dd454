"""Mixtures of experts from the command line: saved tiny models through counts, LLMDcos and the report,
and the refusals that come before any work (docs/moe.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_activation.cli import build_cli, main
from lit_activation.models.tiny import tiny_model, tiny_tokenizer

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Tiny Mixtral (saved with per-expert keys), Qwen3-MoE and gpt-oss (fused, transposed), 3 layers each."""
    out = {}
    for arch in ("mixtral", "qwen3_moe", "gpt_oss"):
        directory = tmp_path_factory.mktemp(arch)
        tiny_model(arch, layers=3).save_pretrained(directory)
        tiny_tokenizer().save_pretrained(directory)
        out[arch] = str(directory)
    return out


def small(tmp_path: Path, name: str) -> list[str]:
    return [
        "--data.init_args.datasets", "[humaneval, reviews]", "--data.init_args.num_samples", "3", "--data.init_args.max_length", "24",
        "--data.init_args.window", "24", "--data.init_args.batch_size", "3",
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path), "--trainer.logger.init_args.name", name,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mixtral", "qwen3_moe", "gpt_oss"])
def test_counts_and_the_report_run_on_a_saved_mixture_of_experts(tmp_path, saved, arch, capsys):
    build_cli(["predict", "--config", str(CONFIGS / "counts_embedded.yaml"), "--model.model", saved[arch], *small(tmp_path, "counts")])
    run = tmp_path / "counts" / "version_0"
    counts = json.loads((run / "counts.json").read_text())
    assert all("experts" in d for d in counts["datasets"].values())
    assert {"experts.csv", "experts.png"} <= {p.name for p in run.iterdir()}
    main(["report", str(run), "--output", str(tmp_path / "report")])
    report = json.loads((Path(capsys.readouterr().out.strip().splitlines()[-1]).parent / "report.json").read_text())
    (verdict,) = [a["verdict"] for a in report["sections"]["experts"]["summary"]]
    assert verdict in ("held", "not held", "inconclusive")  # 3 MoE layers: assessable


@pytest.mark.slow
def test_llmdcos_runs_on_a_saved_mixture_of_experts(tmp_path, saved):
    args = [*small(tmp_path, "sim"), "--trainer.callbacks.init_args.box_pairs", "[[humaneval, reviews]]"]
    build_cli(["predict", "--config", str(CONFIGS / "similarity_embedded.yaml"), "--model.model", saved["qwen3_moe"], *args])
    result = json.loads((tmp_path / "sim" / "version_0" / "llmdcos.json").read_text())
    assert result["llmdcos"] and all(0 <= v <= 1 for per_pair in result["llmdcos"].values() for pair in per_pair for v in pair)


def refused(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("subcommand", ["validate", "compare"])
def test_pruning_the_weights_of_a_mixture_of_experts_is_one_line_before_any_work(subcommand, tmp_path, capsys, no_model_loading):
    config = "prune_embedded.yaml" if subcommand == "validate" else "compare_embedded.yaml"
    extra = ["--output_dir", str(tmp_path / "sweep")] if subcommand == "compare" else ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    err = refused([subcommand, "--config", str(CONFIGS / config), "--model.model", "tiny-mixtral", *extra], capsys)
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "tiny-mixtral is a mixture of experts: pruning the weights inside its experts is not supported yet" in line
    assert "removing whole experts is (pruning.experts.ratio)" in line
    assert "Traceback" not in err and not (tmp_path / "sweep").exists()


def counts_with_experts(path: Path, model: str = "tiny-mixtral") -> str:
    """A counts.json of a counts run on tiny-mixtral (2 layers, 4 experts) over two datasets."""
    per_layer = {str(layer): {"taylor_mass": [1.0, 2.0, 3.0, 4.0]} for layer in (0, 1)}
    entry = {"n_samples": 4, "layer_counts": [10, 20], "quantile_counts": {}, "experts": {"num_experts": 4, "layers": [0, 1], "per_layer": per_layer}}
    path.write_text(json.dumps({"model": model, "datasets": {"humaneval": entry, "reviews": entry}}))
    return str(path)


@pytest.mark.parametrize(("model", "options", "message"), [
    ("tiny-mixtral", ["--pruning.experts.ratio", "1.0"], "experts.ratio 1.0 would remove every expert of each MoE layer; accepted: [0, 1)"),
    ("tiny-mixtral", ["--pruning.experts.ratio", "0.75"],
     "experts.ratio 0.75 keeps 1 of tiny-mixtral's 4 experts per MoE layer, fewer than the 2 each token is routed to"),
    ("tiny-llama", ["--pruning.experts.ratio", "0.25"],
     "tiny-llama has no experts to remove (a dense model): pruning.experts.ratio applies to a mixture of experts"),
    pytest.param("tiny-mixtral", ["--pruning.experts.ratio", "0.5", "--pruning.experts.score", "TaylorMass", "--pruning.experts.score.init_args.path",
                                  "{counts}", "--pruning.experts.score.init_args.dataset", "mmlu"],
                 "has no dataset 'mmlu'; it has ['humaneval', 'reviews']", marks=pytest.mark.slow),  # read at setup, after the data
    pytest.param("tiny-qwen3_moe", ["--pruning.experts.ratio", "0.5", "--pruning.experts.score", "TaylorMass", "--pruning.experts.score.init_args.path",
                                    "{counts}"], "holds counts of model 'tiny-mixtral'; this run prunes 'tiny-qwen3_moe'", marks=pytest.mark.slow),
], ids=["ratio-1", "top-k-above-kept", "dense-model", "dataset-not-in-counts", "counts-of-another-model"])
def test_a_removal_of_experts_that_cannot_be_is_one_line_before_the_model_loads(model, options, message, tmp_path, capsys, no_model_loading):
    counts = counts_with_experts(tmp_path / "counts.json")
    args = ["validate", "--config", str(CONFIGS / "prune_embedded.yaml"), "--model.model", model, "--pruning.sparsity", "0",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), *[o.replace("{counts}", counts) for o in options]]
    err = refused(args, capsys)
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert message in line and "Traceback" not in err
    assert not list((tmp_path / "runs").rglob("pruning.json"))


@pytest.mark.slow
def test_experts_chosen_by_a_datasets_taylor_mass_pass_the_checks_and_reach_the_model(tmp_path, capsys, no_model_loading):
    """Just inside the edges: the same options with the file's own dataset and a ratio that keeps top-k get as far as loading."""
    counts = counts_with_experts(tmp_path / "counts.json")
    with pytest.raises(no_model_loading):
        main(["validate", "--config", str(CONFIGS / "prune_embedded.yaml"), "--model.model", "tiny-mixtral", "--model.dtype", "bfloat16",
              "--pruning.sparsity", "0",
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--pruning.experts.ratio", "0.5", "--pruning.experts.score", "TaylorMass",
              "--pruning.experts.score.init_args.path", counts, "--pruning.experts.score.init_args.dataset", "reviews"])


def test_experts_the_engine_cannot_read_are_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch, no_model_loading):
    """An architecture whose experts module carries none of transformers' layout flags: refused naming it."""
    from lit_activation.models import architectures
    from tests.engine.test_experts import OpaqueExperts

    building = architectures.fake_model

    def opaque(config, *args, **kwargs):
        model = building(config, *args, **kwargs)
        for block in model.model.layers:
            block.mlp.experts = OpaqueExperts(block.mlp.experts)
        return model

    monkeypatch.setattr(architectures, "fake_model", opaque)
    monkeypatch.setattr(architectures, "_SCORABLE", {})  # what this process found of tiny-mixtral before
    err = refused(["predict", "--config", str(CONFIGS / "counts_embedded.yaml"), "--model.model", "tiny-mixtral", *small(tmp_path, "x")], capsys)
    assert "error: MixtralForCausalLM cannot be scored: its MixtralDecoderLayer holds mlp.experts.weights" in err
    assert "Traceback" not in err
