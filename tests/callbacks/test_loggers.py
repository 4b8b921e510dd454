"""Results in any Lightning logger, read back from what each logger stored: W&B offline and MLflow's local
file store with the real packages (one short run, both loggers at once), TensorBoard and CSV together
through the dispatch itself; and which directory a run's files go to, for each logger."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger

from lit_activation import loggers, plots
from lit_activation.callbacks.base import log_results
from lit_activation.cli import build_cli
from tests.helpers import ROOT
from tests.helpers.loggers import offline_history


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Path:
    """W&B offline, every file it writes under tmp_path (no network, nothing in the home directory)."""
    pytest.importorskip("wandb")
    for variable in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    return tmp_path / "wb"


@pytest.fixture
def mlflow_file_store(tmp_path, monkeypatch) -> str:
    """An MLflow tracking URI on a local file store (MLflow 3 asks for this opt-in to use one)."""
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return f"file:{tmp_path / 'mlruns'}"


@pytest.mark.slow
def test_a_counts_run_logs_to_wandb_offline_and_mlflow_at_once(tmp_path, offline_wandb, mlflow_file_store):
    from mlflow.tracking import MlflowClient

    both = [
        {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {"save_dir": str(offline_wandb), "project": "counts", "offline": True}},
        {"class_path": "lightning.pytorch.loggers.MLFlowLogger", "init_args": {"experiment_name": "counts", "tracking_uri": mlflow_file_store}},
    ]
    cli = build_cli([
        "predict", "--config", str(ROOT / "configs" / "counts_embedded.yaml"), "--model.model", "tiny-llama",
        "--data.init_args.datasets", "[wiki, news]", "--data.init_args.num_samples", "2", "--data.init_args.batch_size", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.logger", json.dumps(both),
    ])
    wandb_logger, mlflow_logger = cli.trainer.loggers
    wandb_logger.experiment.finish()  # W&B writes its records when its run ends (Lightning leaves that to the process's exit)

    # the run dir: W&B's save_dir/project/<run id> (the first logger's, as Lightning places checkpoints)
    (offline_run,) = (offline_wandb / "wandb").glob("offline-run-*")
    run = offline_wandb / "counts" / offline_run.name.rsplit("-", 1)[1]
    assert run == Path(cli.trainer.log_dir) and (run / "config.yaml").is_file()
    counts = json.loads((run / "counts.json").read_text())
    assert loggers.run_dir_of([mlflow_logger], tmp_path) == Path(mlflow_logger.save_dir) / mlflow_logger.experiment_id / mlflow_logger.run_id

    history = offline_history(offline_wandb)
    client = MlflowClient(mlflow_file_store)
    artifacts = {a.path for a in client.list_artifacts(mlflow_logger.run_id)} | {
        a.path for a in client.list_artifacts(mlflow_logger.run_id, "log10_mean_A")}
    assert "counts.png" in artifacts
    for name, result in counts["datasets"].items():
        layer_counts = dict(enumerate(result["layer_counts"]))
        tag = f"counts/{name}"
        assert {r["trainer/global_step"]: r[tag] for r in history if tag in r} == layer_counts
        assert {m.step: m.value for m in client.get_metric_history(mlflow_logger.run_id, tag)} == layer_counts

        hist = result["log10_histogram"]
        filled = {layer: c for layer, c in enumerate(hist["counts"]) if sum(c)}
        tag = f"log10_mean_A/{name}"
        logged = {r["trainer/global_step"]: r for r in history if f"{tag}/values" in r}
        assert {layer: r[f"{tag}/values"] for layer, r in logged.items()} == filled and filled
        bins = len(hist["counts"][0])
        edges = [hist["lo"] + b * (hist["hi"] - hist["lo"]) / bins for b in range(bins + 1)]
        assert all(r[f"{tag}/bins"] == pytest.approx(edges, rel=1e-6) for r in logged.values())
        assert f"{tag}.json" in artifacts
        stored = json.loads(Path(client.download_artifacts(mlflow_logger.run_id, f"{tag}.json", str(tmp_path))).read_text())
        assert stored["layer_counts"] == hist["counts"] and (stored["lo"], stored["hi"]) == (hist["lo"], hist["hi"])

    (image,) = [r for r in history if r.get("counts/_type") == "images/separated"]
    (png,) = image["counts/filenames"]
    assert (offline_run / "files" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_and_csv_at_once_each_get_what_they_hold(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    trainer = SimpleNamespace(loggers=[tb, csv], default_root_dir=str(tmp_path))
    assert loggers.run_dir_of(trainer.loggers, tmp_path) == Path(tb.log_dir)
    figure = plots.line_figure([0, 1, 2], {"pruned": [0.4, 0.5, 0.6]}, "layer", "sparsity", "t")
    log_results(trainer, scalars={"pruning/achieved_sparsity": 0.5}, per_layer={"pruning/layer_sparsity": [0.4, 0.5, 0.6]},
                figures={"pruning/sparsity": figure})
    layer_counts = [[1, 2, 0, 1], [0, 0, 0, 0], [4, 0, 0, 0]]
    loggers.log_histograms(trainer.loggers, "log10_mean_A/wiki", -6.0, -2.0, layer_counts)
    plots.close(figure)

    events = EventAccumulator(tb.log_dir, size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("pruning/layer_sparsity")] == [(0, pytest.approx(0.4)), (1, 0.5), (2, pytest.approx(0.6))]
    assert events.Scalars("pruning/achieved_sparsity")[0].value == 0.5
    assert events.Images("pruning/sparsity")[0].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
    histograms = {e.step: e.histogram_value for e in events.Histograms("log10_mean_A/wiki")}
    assert sorted(histograms) == [0, 2]  # the empty layer is left out
    assert list(histograms[0].bucket) == [1, 2, 0, 1] and list(histograms[0].bucket_limit) == [-5.0, -4.0, -3.0, -2.0]
    # the sums from the bins' centres -5.5, -4.5, -3.5, -2.5
    assert histograms[0].num == 4 and math.isclose(histograms[0].sum, -5.5 - 2 * 4.5 - 2.5)
    assert math.isclose(histograms[2].sum_squares, 4 * 5.5**2)

    rows = (Path(csv.log_dir) / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == ["pruning/achieved_sparsity", "pruning/layer_sparsity", "step"] and len(rows) == 5
    assert (Path(csv.log_dir) / "pruning" / "sparsity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # CSV: the figure as a file


def test_a_csv_logger_that_holds_the_run_gets_no_second_copy_of_a_figure(tmp_path):
    csv = CSVLogger(tmp_path, name="csv")
    figure = plots.line_figure([0, 1], {"a": [1.0, 2.0]}, "x", "y", "t")
    loggers.log_figures([csv], {"counts": figure}, loggers.run_dir_of([csv], tmp_path))
    plots.close(figure)
    assert not (Path(csv.log_dir) / "counts.png").exists()


class Remote(Logger):
    """A logger that keeps no local files, whose run is named by an id (as W&B's or MLflow's)."""

    def __init__(self, save_dir: str | None) -> None:
        super().__init__()
        self._save_dir, self.started = save_dir, False

    @property
    def experiment(self) -> object:
        self.started = True
        return self

    name = property(lambda self: "project")
    version = property(lambda self: "ab12cd" if self.started else None)
    save_dir = property(lambda self: self._save_dir)
    log_hyperparams = log_metrics = lambda self, *args, **kwargs: None


def test_the_run_dir_is_the_first_directory_loggers_else_the_first_loggers_as_lightning_places_checkpoints(tmp_path):
    tb, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    assert loggers.run_dir_of([Remote("w"), csv, tb], tmp_path) == Path(csv.log_dir) == tmp_path / "csv" / "version_0"
    assert loggers.run_dir_of([Remote(str(tmp_path / "w"))], tmp_path) == tmp_path / "w" / "project" / "ab12cd"  # its run started to name it
    assert loggers.run_dir_of([Remote(None)], tmp_path / "root") == tmp_path / "root" / "project" / "ab12cd"
    assert loggers.run_dir_of([], tmp_path / "root") == tmp_path / "root"
