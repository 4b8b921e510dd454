"""Mixtures of experts from the command line: saved tiny models through counts, LLMDcos and the report,
and the refusals that come before any work (docs/moe.md)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from lit_activation.cli import build_cli, main
from lit_activation.models.tiny import tiny_model, tiny_tokenizer
from tests.helpers import ROOT

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
def test_a_method_that_cannot_prune_experts_is_one_line_before_any_work(subcommand, tmp_path, capsys, no_model_loading):
    config = "prune_embedded.yaml" if subcommand == "validate" else "compare_embedded.yaml"
    extra = ["--output_dir", str(tmp_path / "sweep"), "--metrics", "[Wanda, Taylor]"] if subcommand == "compare" else [
        "--trainer.logger.init_args.save_dir", str(tmp_path), "--pruning.metric", "Taylor"]
    err = refused([subcommand, "--config", str(CONFIGS / config), "--model.model", "tiny-mixtral", *extra], capsys)
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "tiny-mixtral is a mixture of experts: Taylor cannot prune inside its experts yet; accepted there: Wanda, Magnitude, SparseGPT" in line
    assert "Traceback" not in err and not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_validate_prunes_a_saved_mixture_of_experts_inside_its_experts(tmp_path, saved, bench_files):
    """SparseGPT at 50 %, each expert from its gate-weighted routed tokens: pruning.json records the
    policy and each expert's calibration tokens, and the experts are half zeros."""
    args = [
        "validate", "--config", str(CONFIGS / "prune_embedded.yaml"), "--model.model", saved["mixtral"], "--pruning.metric", "SparseGPT",
        "--pruning.allocation", "Uniform", "--pruning.expert_inputs.policy", "routed_weighted", "--data.init_args.max_chunks", "2",
        "--pruning.calibration.samples", "4", "--pruning.calibration.seqlen", "32", "--pruning.calibration.files", bench_files["c4"],
        "--pruning.calibration.dataset", "c4", "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
    ]
    build_cli(args)
    (record_path,) = tmp_path.glob("*/version_0/pruning.json")
    record = json.loads(record_path.read_text())
    assert record["expert_inputs"]["policy"] == "routed_weighted" and record["achieved_sparsity"] == pytest.approx(0.5)
    assert sum(record["expert_tokens"].values()) == 3 * 4 * 32 * 2  # 3 layers × every token × top-2
    assert record["modules"]["model.layers.2.mlp.experts.1.down_proj"]["zeros"] == pytest.approx(0.5)


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
                 "Unknown dataset 'mmlu' in counts file", marks=pytest.mark.slow),  # read at setup, after the data
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


@pytest.mark.slow
def test_the_readme_s_sweep_of_a_mixture_of_experts_runs_to_its_report(tmp_path, monkeypatch, capsys):
    """The README's two lines, as written (offline, on the embedded corpora): uniform against the paper's
    Activation allocation (counts on the fly, the experts' weights in every layer's count), Wanda and
    SparseGPT inside the experts, two seeds; every run recorded, and the report gives Validation 1 a
    verdict per method."""
    from tests.helpers.pages import tool_commands
    from tests.pruning.test_compare import rows

    sweep, report = [line for line in tool_commands() if "runs/compare_tiny_moe" in line]
    assert sweep.startswith("lit-activation compare ") and report == "lit-activation report runs/compare_tiny_moe"
    monkeypatch.chdir(tmp_path)
    build_cli(shlex.split(sweep.replace("configs/", f"{ROOT / 'configs'}/"))[1:])
    runs = rows(tmp_path / "runs" / "compare_tiny_moe")
    assert len(runs) == 1 + 2 * 2 * 2  # dense + 2 allocations × 2 methods × 2 seeds
    assert {(r["method"], r["pruning_metric"]) for r in runs[1:]} == {(a, m) for a in ("uniform", "activation") for m in ("wanda", "sparsegpt")}
    # each row loses ⌊in · s_l⌋ weights: with 32 inputs a layer's fraction moves by up to 1/32 from its target
    assert all(float(r["achieved_sparsity"]) == pytest.approx(0.5, abs=1 / 32) for r in runs if r["method"] != "dense")
    capsys.readouterr()
    main(shlex.split(report)[1:])
    written = json.loads((tmp_path / Path(capsys.readouterr().out.strip().splitlines()[-1])).parent.joinpath("report.json").read_text())
    judged = {part["detail"]["metric"]: part["verdict"] for part in written["sections"]["validation1"]["parts"]
              if part["claim"].startswith("Validation 1, tiny-mixtral, activation vs uniform")}
    assert judged.keys() == {"wanda", "sparsegpt"} and "not run" not in judged.values(), written["sections"]["validation1"]


@pytest.mark.slow
def test_compare_sweeps_expert_scores_and_ratios_to_their_verdicts(tmp_path, bench_files, capsys):
    """Whole experts removed by the Taylor mass of a counts run and by routing frequency, at 25 and 50 %,
    two seeds, no weight pruned: every run recorded with its ratio, and the report's expert section
    compares the Taylor mass with frequency at each ratio."""
    from tests.pruning.test_compare import arguments, rows

    counts = counts_with_experts(tmp_path / "counts.json")
    sweep = tmp_path / "experts.yaml"
    sweep.write_text(f"""
sparsities: []
experts:
  - {{ratio: 0.25, score: {{class_path: lit_activation.pruning.experts.Frequency}}}}
  - {{ratio: 0.5, score: {{class_path: lit_activation.pruning.experts.Frequency}}}}
  - {{ratio: 0.25, score: {{class_path: lit_activation.pruning.experts.TaylorMass, init_args: {{path: {counts}}}}}}}
  - {{ratio: 0.5, score: {{class_path: lit_activation.pruning.experts.TaylorMass, init_args: {{path: {counts}}}}}}}
""")
    build_cli(["compare", *arguments(tmp_path, bench_files, "cmp", "--model.model", "tiny-mixtral", "--config", str(sweep))])
    runs = rows(tmp_path / "cmp")
    assert sorted((r["method"], r["pruning_metric"], float(r["sparsity"])) for r in runs if r["seed"] == "1") == [
        ("experts", "frequency", 0.25), ("experts", "frequency", 0.5), ("experts", "taylormass", 0.25), ("experts", "taylormass", 0.5),
    ]
    assert len(runs) == 1 + 4 * 2 and all(float(r["achieved_sparsity"]) == 0 for r in runs)  # no weight pruned
    main(["report", str(tmp_path / "cmp"), "--output", str(tmp_path / "report")])
    report = json.loads((Path(capsys.readouterr().out.strip().splitlines()[-1]).parent / "report.json").read_text())
    (claim,) = report["sections"]["expert_removal"]["summary"]
    assert "the Taylor mass keeps a lower perplexity than frequency, every fraction" in claim["claim"]
    assert claim["detail"]["parts"] == 2  # one per ratio
