"""What a run says on stderr: a resumed run's one line of work done and left, the unit of work beside the
progress bar, and where the results are as its last line; nothing of it under --quiet."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch

from lit_activation.callbacks.base import Progress
from lit_activation.callbacks.status import RunStatus, resume_line, show_beside_bar, unit_of_work
from lit_activation.cli import main
from lit_activation.cli.console import console
from lit_activation.cli.run_dirs import IdNamedRuns
from tests.cli.test_resume import predict_args
from tests.helpers import ROOT
from tests.helpers.cli import build_not_run


class Interrupted(Exception):
    """Stands for the interruption: raised once two datasets are recorded as finished."""


def interrupted_after_two_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A counts run over humaneval, reviews, wiki, news stopped once humaneval and reviews are finished;
    its run dir, as an interrupted run leaves it (progress/ kept)."""
    save = Progress.save_json

    def save_then_stop(self, key: str, record: dict) -> None:  # noqa: ANN001
        save(self, key, record)
        if key == "0001":
            raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(Progress, "save_json", save_then_stop)
        with pytest.raises(Interrupted):
            main(predict_args(tmp_path, "counts_embedded.yaml", "cut", "--data.init_args.num_samples", "2"))
    run = tmp_path / "cut" / "version_0"
    assert sorted(p.name for p in (run / "progress" / "counts").iterdir()) == ["0000.json", "0001.json"]
    return run


@pytest.mark.slow
def test_a_resumed_run_says_what_was_done_and_what_is_left_and_ends_with_where_its_results_are(tmp_path, monkeypatch, capsys):
    run = interrupted_after_two_datasets(tmp_path, monkeypatch)
    capsys.readouterr()
    main(predict_args(tmp_path, "counts_embedded.yaml", "cut", "--data.init_args.num_samples", "2", "--resume", "last"))
    err = capsys.readouterr().err.strip().splitlines()
    assert f"resuming {run}: humaneval, reviews done; wiki, news left" in err
    assert err[-1] == f"results in {run}"
    assert (run / "counts.json").is_file() and not (run / "progress").exists()


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_keeps_warnings_and_errors_and_drops_the_status_lines(capsys, quiet):
    with console(verbose=False, quiet=quiet):
        logging.getLogger("lit_activation.callbacks.status").info("resuming runs/c/version_0: wiki done; news left")
        logging.getLogger("lit_activation.cli.app").info("results in runs/c/version_0")
        logging.getLogger("lit_activation.data.samples").warning("wiki: 1 of 2 inputs were cut")
    err = capsys.readouterr().err.splitlines()
    status = ["resuming runs/c/version_0: wiki done; news left", "results in runs/c/version_0"]
    assert err == ([] if quiet else status) + ["warning: wiki: 1 of 2 inputs were cut"]


def test_the_resume_line_joins_what_each_kind_of_work_says_once():
    run = Path("runs/counts/version_3")
    assert resume_line(run, ["wiki, news done; code, math left"]) == "resuming runs/counts/version_3: wiki, news done; code, math left"
    assert resume_line(run, ["2 of 6 groups done; 4 left"] * 2) == "resuming runs/counts/version_3: 2 of 6 groups done; 4 left"


class Data:
    """What unit_of_work reads of a data module."""

    def __init__(self, mode: str, names: list[str], n_groups: int) -> None:
        self.hparams, self.dataset_names, self.n_groups = {"mode": mode}, names, n_groups


def test_the_unit_of_work_is_the_dataset_of_a_counts_batch_and_the_groups_of_a_pairs_batch():
    counts = Data("single", ["humaneval", "reviews", "wiki", "news"], 16)
    assert unit_of_work(counts, {"dataset_index": torch.tensor([2, 2]), "group_index": torch.tensor([8, 9])}) == "wiki, dataset 3 of 4"
    pairs = Data("pairs", ["wiki", "news"], 64)
    assert unit_of_work(pairs, {"dataset_index": torch.tensor([0, 0, 1, 1]), "group_index": torch.tensor([8, 9, 10, 11])}) == "groups 9-12 of 64"
    assert unit_of_work(pairs, {"group_index": torch.tensor([63])}) == "group 64 of 64"
    assert unit_of_work(pairs, {"input_ids": torch.zeros(1, 1)}) is None


def test_the_unit_of_work_goes_beside_lightnings_bar():
    from lightning.pytorch.callbacks import TQDMProgressBar
    from tqdm import tqdm

    bar = TQDMProgressBar()
    show_beside_bar(bar, "wiki, dataset 3 of 4")  # before the bar exists: nothing to do
    bar.predict_progress_bar = tqdm(total=4, file=io.StringIO())
    show_beside_bar(bar, "wiki, dataset 3 of 4")
    assert bar.predict_progress_bar.desc == "Predicting wiki, dataset 3 of 4: "  # tqdm puts its bar after the colon
    show_beside_bar(None, "wiki, dataset 3 of 4")  # no bar (--quiet, a log file): nothing


def test_the_unit_of_work_goes_beside_lightnings_rich_bar_too():
    from lightning.pytorch.callbacks import RichProgressBar
    from rich.progress import Progress

    bar = RichProgressBar()
    bar.progress = Progress()
    bar.predict_progress_bar_id = bar.progress.add_task("Predicting", total=4)
    show_beside_bar(bar, "groups 9-12 of 64")
    assert bar.progress.tasks[0].description == "Predicting groups 9-12 of 64"


@pytest.mark.parametrize(("terminal", "quiet", "bar"), [(True, False, True), (True, True, False), (False, False, False)])
def test_the_bar_shows_on_a_terminal_unless_quiet(monkeypatch, terminal, quiet, bar):
    monkeypatch.setattr("lit_activation.cli.app.interactive", lambda: terminal)
    if quiet:
        monkeypatch.setenv("LIT_ACTIVATION_QUIET", "1")
    cli, _ = build_not_run(["predict", "--config", str(ROOT / "configs" / "counts_embedded.yaml")], monkeypatch)
    assert (cli.trainer.progress_bar_callback is not None) == bar
    assert any(isinstance(cb, RunStatus) for cb in cli.trainer.callbacks)


def test_a_failed_wandb_runs_new_dir_is_found_for_removal(tmp_path):
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    (tmp_path / "counts" / "older").mkdir(parents=True)
    watch = IdNamedRuns.of([WandbLogger(save_dir=str(tmp_path), project="counts", offline=True)], tmp_path)
    assert watch is not None and watch.parent == tmp_path / "counts"
    (tmp_path / "counts" / "ab12cd").mkdir()
    assert watch.new() == [tmp_path / "counts" / "ab12cd"]
    assert IdNamedRuns.of([], tmp_path) is None
