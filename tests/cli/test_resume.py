"""A predict run killed in its middle resumes with `--resume`: what it finished is kept, the rest is
scored, and the results equal an uninterrupted run's, value for value."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lit_activation import module
from lit_activation.cli import build_cli
from lit_activation.resume import result_differences
from tests.helpers import ROOT, child_env

CONFIGS = ROOT / "configs"


def predict_args(tmp_path: Path, config: str, name: str, *extra: str) -> list[str]:
    return [
        "predict", "--config", str(CONFIGS / config), "--model.model", "tiny-llama", "--data.init_args.num_samples", "6",
        "--data.init_args.batch_size", "2", "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.logger.init_args.name", name, *extra,
    ]


def assert_same_values(got: object, expected: object, where: str = "") -> None:
    """Value for value: counts and every other integer exactly; floats to 1e-9 (the interrupted part
    ran in another process, whose thread count may order a float sum differently)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and got.keys() == expected.keys(), where
        for key in expected:
            assert_same_values(got[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_same_values(g, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), where
    else:
        assert got == expected and type(got) is type(expected), where


def killed_after(tmp_path: Path, units: int, args: list[str]) -> None:
    """Run the CLI in its own process and SIGKILL it once it has written `units` finished units of work."""
    marker = tmp_path / "halted"
    child = subprocess.Popen([sys.executable, "-m", "tests.helpers.halting_child", str(units), str(marker), "--", *args],
                             env=child_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not marker.exists():
        assert child.poll() is None, f"the run ended before it was halfway: {child.stderr.read()[-3000:]}"
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    marker.unlink()


@pytest.mark.slow
@pytest.mark.parametrize(("config", "result", "units"), [("counts_embedded.yaml", "counts.json", 2), ("llmdcos_embedded.yaml", "llmdcos.json", 1)])
def test_a_killed_run_resumes_to_the_uninterrupted_values(tmp_path, monkeypatch, config, result, units):
    build_cli(predict_args(tmp_path, config, "whole"))
    whole = json.loads((tmp_path / "whole" / "version_0" / result).read_text())
    killed_after(tmp_path, units, predict_args(tmp_path, config, "cut"))
    run = tmp_path / "cut" / "version_0"
    assert (run / "progress").is_dir() and not (run / result).exists()
    saved = (run / "config.yaml").read_text()

    scored = []
    score = module.stream_taylor_scores

    def counting(model, ids, *args, **kwargs):
        scored.append(ids.shape[0])
        return score(model, ids, *args, **kwargs)

    monkeypatch.setattr(module, "stream_taylor_scores", counting)
    build_cli(predict_args(tmp_path, config, "cut", "--resume", "last"))
    resumed = json.loads((run / result).read_text())
    assert_same_values(resumed, whole)
    assert not (run / "progress").exists() and (run / "config.yaml").read_text() == saved  # its own config kept
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == ["version_0"]  # no new version
    whole_batches, done_batches = (12, 6) if result == "counts.json" else (3, 1)  # 4 datasets × 3 batches; 3 batches of 2 groups
    assert len(scored) == whole_batches - done_batches  # only what was not finished was scored


def test_a_resume_that_would_change_the_results_is_refused_naming_the_difference(tmp_path, request):
    build_cli(predict_args(tmp_path, "counts_embedded.yaml", "cut", "--data.init_args.num_samples", "2"))
    (tmp_path / "cut" / "version_0" / "progress").mkdir()  # as an interrupted run leaves it
    no_model_loading = request.getfixturevalue("no_model_loading")  # from here on
    with pytest.raises(ValueError, match=r"differs from its saved config.yaml in what changes results \(data.init_args.num_samples: 2 -> 3\)"):
        build_cli(predict_args(tmp_path, "counts_embedded.yaml", "cut", "--data.init_args.num_samples", "3", "--resume", "last"))
    with pytest.raises(no_model_loading):  # what does not change results may differ: the run goes on to load the model
        build_cli(predict_args(tmp_path, "counts_embedded.yaml", "cut", "--data.init_args.num_samples", "2", "--model.check_memory", "false",
                               "--trainer.enable_model_summary", "false", "--resume", "last"))


def test_what_a_resume_may_change_and_what_it_may_not():
    saved = {"model": {"model": "m", "check_memory": True, "engine": {"target": "max_logit"}},
             "trainer": {"devices": 8, "num_nodes": 2, "logger": {"init_args": {"name": "a"}}, "precision": None}, "resume": None}
    same = {"model": {"model": "m", "check_memory": False, "engine": {"target": "max_logit"}},
            "trainer": {"devices": 4, "num_nodes": 1, "logger": {"init_args": {"name": "b"}}, "precision": None}, "resume": "last"}
    assert result_differences(saved, same) == []
    other = {**same, "model": {**same["model"], "engine": {"target": "loss"}}, "trainer": {**same["trainer"], "precision": "bf16-true"}}
    assert result_differences(saved, other) == ["model.engine.target: 'max_logit' -> 'loss'", "trainer.precision: None -> 'bf16-true'"]


@pytest.mark.parametrize(("resume", "message"), [
    ("last", r"--resume last: no interrupted run under .*cut \(a run dir with progress/\)"),
    ("{tmp}/nowhere", r"--resume .*nowhere: no such run dir; accepted: a run dir such as"),
    ("{tmp}/cut/version_0", r"--resume .*version_0: nothing left to resume there \(no progress/"),
])
def test_a_resume_of_nothing_is_refused_before_any_model_loads(tmp_path, no_model_loading, resume, message):
    (tmp_path / "cut" / "version_0").mkdir(parents=True)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        build_cli(predict_args(tmp_path, "counts_embedded.yaml", "cut", "--resume", resume.format(tmp=tmp_path)))
