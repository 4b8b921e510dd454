"""Every callback the project ships states its memory, and the plan's figure for it matches what it allocates.

Each case runs one subcommand on a tiny model with one callback measured (tests/helpers/allocations.py:
every tensor its hooks create, alive at once) and compares the peak with the largest phase of the
callback's own `memory_needs`, on the run's architecture, layout and data.
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path

import pytest
from lightning.pytorch import Callback

import lit_activation.callbacks as shipped
from lit_activation.cli import build_cli
from lit_activation.models.architectures import model_config
from lit_activation.models.loading import resolve_dtype
from lit_activation.planning.plan import Job, Layout, PlanContext, plan_memory
from lit_activation.trainer import ActivationTrainer
from tests.helpers.allocations import measure

CONFIGS = Path(__file__).parents[2] / "configs"


def shipped_callbacks() -> list[type]:
    return [c for c in vars(shipped).values() if inspect.isclass(c) and issubclass(c, Callback)]


def test_every_shipped_callback_states_its_memory():
    assert {c.__name__ for c in shipped_callbacks()} >= {"ActivationCounts", "LLMDcos", "STSCorrelation", "AllPairsSimilarity", "Pruning", "ZeroShotEval"}
    assert [c.__name__ for c in shipped_callbacks() if not hasattr(c, "memory_needs")] == []


def test_a_callback_without_memory_needs_is_shown_as_not_counted():
    class Probe(Callback):
        pass

    from lightning.pytorch.callbacks import ModelSummary

    plan = plan_memory(Job("tiny-llama", callbacks=[Probe(), ModelSummary()]), model_config("tiny-llama"))
    assert plan.not_counted == ["Probe (it has no memory_needs)"]  # Lightning's own callbacks hold no tensors: not listed
    assert "  not counted: Probe (it has no memory_needs)" in plan.table().splitlines()


def run_measured(kind: type, subcommand: str, args: list[str], monkeypatch, weights_in_place: bool = False) -> tuple[int, int, dict]:  # noqa: ANN001
    """(predicted, measured, the callback's footprint) of the first callback of `kind` in the run.

    weights_in_place: the model's weights, which pruning changes in place (an in-place op hands the
    tracker their storage), are not counted as allocated by the callback: they exist before it runs.
    Where the weights are small beside the callback's own memory it makes no difference.
    """
    seen = {}
    original = getattr(ActivationTrainer, subcommand)

    @functools.wraps(original)
    def wrapped(self, model, datamodule=None, *rest, **kwargs):
        (callback,) = [cb for cb in self.callbacks if isinstance(cb, kind)][:1]
        tracker = measure(callback)
        if weights_in_place:
            hook = callback.on_validation_start

            def weights_first(trainer, pl_module, _hook=hook):  # noqa: ANN001, ANN202 - Lightning's hook
                tracker.exclude(pl_module.parameters())
                return _hook(trainer, pl_module)

            callback.on_validation_start = weights_first
        seen.update(callback=callback, tracker=tracker, model=model, datamodule=datamodule)
        return original(self, model, datamodule, *rest, **kwargs)

    monkeypatch.setattr(ActivationTrainer, subcommand, wrapped)
    build_cli([subcommand, *args])
    model, callback = seen["model"], seen["callback"]
    context = PlanContext(model_config(model.hparams.model), resolve_dtype(model.hparams.dtype), model.engine, Layout("cpu"), seen["datamodule"])
    needs = callback.memory_needs(context)
    phases = {p: sum(needs.device.get(p, {}).values()) + sum(needs.host.get(p, {}).values()) for p in needs.phases()}
    return max(phases.values(), default=0), seen["tracker"].peak, phases


def common(tmp_path: Path) -> list[str]:
    return ["--model.model", "tiny-llama", "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path)]


PRUNE = ["--config", str(CONFIGS / "prune_embedded.yaml"), "--data.init_args.max_chunks", "2"]
CASES = {
    "counts": (shipped.ActivationCounts, "predict", lambda b: ["--config", str(CONFIGS / "counts_embedded.yaml"), "--data.init_args.num_samples", "4"]),
    "counts-on-host": (shipped.ActivationCounts, "predict", lambda b: [
        "--config", str(CONFIGS / "counts_embedded.yaml"), "--data.init_args.num_samples", "4", "--trainer.callbacks.init_args.state_device", "cpu"]),
    "llmdcos": (shipped.LLMDcos, "predict", lambda b: ["--config", str(CONFIGS / "llmdcos_embedded.yaml"), "--data.init_args.num_samples", "40"]),
    "sts": (shipped.STSCorrelation, "predict", lambda b: [
        "--config", str(CONFIGS / "sts.yaml"), "--model.dtype", "float32", "--data.init_args.num_samples", "20",
        "--data.init_args.data_files", json.dumps({"stsb": b["stsb"]})]),
    "allpairs": (shipped.AllPairsSimilarity, "predict", lambda b: ["--config", str(CONFIGS / "allpairs_embedded.yaml")]),
    "pruning-activation": (shipped.Pruning, "validate", lambda b: PRUNE),
    "pruning-owl": (shipped.Pruning, "validate", lambda b: [*PRUNE, "--pruning.allocation", "OWL"]),
    "pruning-alpha": (shipped.Pruning, "validate", lambda b: [*PRUNE, "--pruning.allocation", "AlphaPruning"]),
    "pruning-taylor": (shipped.Pruning, "validate", lambda b: [*PRUNE, "--pruning.allocation", "Uniform", "--pruning.metric", "Taylor"]),
    "pruning-taylor-sequential": (shipped.Pruning, "validate", lambda b: [
        *PRUNE, "--pruning.allocation", "Uniform", "--pruning.metric", "Taylor", "--pruning.metric.sequential", "true"]),
    "pruning-gblm": (shipped.Pruning, "validate", lambda b: [*PRUNE, "--pruning.allocation", "Uniform", "--pruning.metric", "GBLM"]),
    "pruning-sparsegpt": (shipped.Pruning, "validate", lambda b: [*PRUNE, "--pruning.allocation", "Uniform", "--pruning.metric", "SparseGPT"]),
    "zeroshot": (shipped.ZeroShotEval, "validate", lambda b: [
        *PRUNE, "--zeroshot.tasks", "[boolq, mmlu]", "--zeroshot.data_files", json.dumps({"boolq": b["boolq"], "mmlu": b["mmlu"]}), "--zeroshot.limit", "8"]),
    "zeroshot-paper": (shipped.ZeroShotEval, "validate", lambda b: [
        *PRUNE, "--zeroshot.tasks", "[boolq]", "--zeroshot.data_files", json.dumps({"boolq": b["boolq"]}), "--zeroshot.protocol", "paper",
        "--zeroshot.n", "16"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_the_plan_s_figure_for_a_callback_matches_what_it_allocates(case, tmp_path, monkeypatch, bench_files):
    kind, subcommand, args = CASES[case]
    predicted, measured, phases = run_measured(kind, subcommand, [*args(bench_files), *common(tmp_path)], monkeypatch)
    print(case, predicted, measured, measured / max(predicted, 1), phases)
    assert predicted > 0 and 0.9 <= measured / predicted <= 1.1


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory) -> str:
    """A Llama-layout model wide enough (512 inputs, 1024 in down_proj) that SparseGPT's H, not the
    calibration activations, make the pruning peak."""
    from tests.helpers.processes import write_model

    return str(write_model(tmp_path_factory.mktemp("wide") / "model", hidden_size=512, intermediate_size=1024, num_attention_heads=8, num_key_value_heads=4))


SPARSEGPT = {  # a short calibration batch from a small file: the tokenized corpus and the activations stay far below the H of a block
    "unstructured": ["--pruning.allocation", "Uniform"],
    "2of4": ["--pruning.allocation", "Uniform", "--pruning.nm", "2:4"],
}


@pytest.mark.parametrize("case", list(SPARSEGPT))
def test_the_plan_s_figure_for_sparsegpt_matches_what_it_allocates(case, wide_model, tmp_path, monkeypatch, bench_files):
    args = [
        *PRUNE, *common(tmp_path), "--model.model", wide_model, "--pruning.metric", "SparseGPT", "--pruning.calibration.dataset", "c4",
        "--pruning.calibration.files", bench_files["c4"], "--pruning.calibration.samples", "4", "--pruning.calibration.seqlen", "32",
        "--pruning.calibration.batch_size", "2", *SPARSEGPT[case],
    ]
    predicted, measured, phases = run_measured(shipped.Pruning, "validate", args, monkeypatch, weights_in_place=True)
    print(case, predicted, measured, measured / max(predicted, 1), phases)
    h_block = 4 * (6 * 512**2 + 1024**2)
    assert phases["pruning, SparseGPT solve"] > phases["pruning"] > h_block  # the case measures what it is for: H and the solve
    assert 0.9 <= measured / predicted <= 1.1
