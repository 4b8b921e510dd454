"""Resuming an interrupted predict run: its run dir found, its saved config held against this one.

A predict run writes each finished unit of work (a Finding 1 dataset, a batch of LLMDcos/STS groups)
to `progress/` in its run dir the moment it finishes (callbacks/base.py, `Progress`), and removes
that directory once its results are written. `lit-activation predict --config X --resume RUN_DIR`
(or `--resume last`) scores only what is not there yet, in the same run dir, and its results equal
an uninterrupted run's. A resume whose configuration would change the results is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lit_activation.files import BrokenFile, check_safetensors, json_type, read_json_object

PROGRESS = "progress"  # the run dir's finished units of work, until the results are written

# What one finished unit holds, per part of progress/ (callbacks/counts.py: a dataset's JSON record;
# callbacks/groups.py: a batch's tensors, one row per group). Each file is checked before any model loads.
PROGRESS_FIELDS = {"counts": {"dataset": str, "result": dict}}
PROGRESS_TENSORS = {"groups": ("index", "grams", "gold")}  # and `hidden`, when the run keeps the hidden-state baseline
REDO = "delete it and the progress files after it (their work is scored again), or start a new run"

# Options that change how a run executes, never what it computes: a resume may differ in them
# (more or fewer devices or nodes after a lost node, another logger or progress bar).
NOT_RESULTS = (
    "resume", "ckpt_path", "weights_only", "return_predictions", "model.check_memory", "trainer.logger", "trainer.devices", "trainer.num_nodes",
    "trainer.strategy", "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.enable_checkpointing",
    "trainer.default_root_dir", "trainer.profiler", "trainer.log_every_n_steps",
)
_VERSION = re.compile(r"^version_(\d+)$")


def interrupted_runs(logger_dir: Path) -> list[Path]:
    """The run dirs (version_N) under a logger's directory that hold unfinished work, oldest first."""
    if not logger_dir.is_dir():
        return []
    runs = [p for p in logger_dir.iterdir() if p.is_dir() and _VERSION.match(p.name) and (p / PROGRESS).is_dir()]
    return sorted(runs, key=lambda p: int(_VERSION.match(p.name).group(1)))


def find_run(resume: str, logger_dir: Path) -> Path:
    """The run dir to resume: `resume` itself, or with `last` the newest interrupted run under
    `logger_dir` (the logger's save_dir/name). Refused, naming what is accepted, when it is not a run
    this logger wrote or when it has nothing left to do."""
    if resume == "last":
        runs = interrupted_runs(logger_dir)
        if not runs:
            raise FileNotFoundError(f"--resume last: no interrupted run under {logger_dir} (a run dir with {PROGRESS}/); give the run dir, or start a new run")
        return runs[-1]
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume {resume}: no such run dir; accepted: a run dir such as {logger_dir}/version_0, or 'last'")
    if path.resolve().parent != logger_dir.resolve() or not _VERSION.match(path.name):
        raise ValueError(f"--resume {resume} is not a run dir of this run's logger ({logger_dir}/version_N): set the same logger name and save_dir")
    if not (path / PROGRESS).is_dir():
        raise ValueError(f"--resume {resume}: nothing left to resume there (no {PROGRESS}/: the run finished, or never started); start a new run")
    return path


def saved_config(run: Path, resume: str) -> dict:
    """The run's config.yaml, as Lightning saved it when the run started; missing or damaged, it is refused."""
    import yaml

    saved = run / "config.yaml"
    if not saved.is_file():
        raise FileNotFoundError(f"--resume {resume}: {saved} is missing; without it the run's configuration cannot be checked")
    remedy = "restore it (the run's configuration is checked against it), or start a new run"
    try:
        config = yaml.safe_load(saved.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise BrokenFile(saved, "is not UTF-8 text", remedy) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise BrokenFile(saved, f"is not valid YAML{f' at line {mark.line + 1}' if mark else ''}", remedy) from None
    if not isinstance(config, dict):
        raise BrokenFile(saved, f"holds no configuration (a YAML {type(config).__name__})", remedy)
    return config


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b.c': value} for every leaf of nested dicts (lists stay whole)."""
    if not isinstance(config, Mapping):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def result_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """'key: saved -> current' for every option that differs between two configs and may change
    results (NOT_RESULTS and everything under them left out)."""
    a, b = flatten(saved), flatten(current)
    ignored = lambda key: any(key == k or key.startswith(f"{k}.") for k in NOT_RESULTS)  # noqa: E731
    return [f"{key}: {a.get(key)!r} -> {b.get(key)!r}" for key in sorted(set(a) | set(b)) if not ignored(key) and a.get(key) != b.get(key)]


def check_same_results(run: Path, saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """Refuse a resume whose configuration differs from the run's saved config.yaml in anything that
    changes results, naming each difference."""
    differences = result_differences(saved, current)
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise ValueError(
            f"--resume {run}: this run's configuration differs from its saved config.yaml in what changes results ({shown}); "
            "resume with the same options, or start a new run"
        )


def check_progress(run: Path) -> None:
    """Before any model loads: every finished unit in the run's progress/ can be read back (a file cut
    short, damaged or edited is named, with what to do). Hidden staging files of a killed write are not units."""
    for part in sorted(p for p in (run / PROGRESS).iterdir() if not p.name.startswith(".")):
        if not part.is_dir() or (part.name not in PROGRESS_FIELDS and part.name not in PROGRESS_TENSORS):
            raise BrokenFile(part, f"is not a part of a run's progress (those are {', '.join([*PROGRESS_FIELDS, *PROGRESS_TENSORS])})", REDO)
        for file in sorted(f for f in part.iterdir() if not f.name.startswith(".")):
            if file.suffix == ".json" and part.name in PROGRESS_FIELDS:
                read_progress_json(file)
            elif file.suffix == ".safetensors" and part.name in PROGRESS_TENSORS:
                read_progress_tensors(file)
            else:
                raise BrokenFile(file, f"is not a finished unit of {part.name} (a {'.json' if part.name in PROGRESS_FIELDS else '.safetensors'} file)", REDO)


def read_progress_json(file: Path) -> dict:
    """One finished unit's JSON record, with its fields (PROGRESS_FIELDS of its part)."""
    record = read_json_object(file, REDO)
    for field, kind in PROGRESS_FIELDS[file.parent.name].items():
        if not isinstance(record.get(field), kind):
            got = "lacks it" if field not in record else f"has {json_type(record[field])}"
            raise BrokenFile(file, f"is not a finished unit: its {field!r} {got}", REDO)
    return record


def read_progress_tensors(file: Path) -> dict[str, Any]:
    """One finished batch's tensors (PROGRESS_TENSORS of its part): `index` the groups' numbers, and one
    row of every other tensor per group."""
    import torch
    from safetensors.torch import load_file

    check_safetensors(file, REDO)
    tensors = load_file(str(file))
    missing = [name for name in PROGRESS_TENSORS[file.parent.name] if name not in tensors]
    if missing:
        raise BrokenFile(file, f"is not a finished unit: it lacks the tensors {missing}", REDO)
    index = tensors["index"]
    if index.dim() != 1 or index.is_floating_point() or index.dtype == torch.bool or index.numel() == 0 or bool((index < 0).any()):
        raise BrokenFile(file, f"is not a finished unit: its 'index' is {index.dtype} of shape {list(index.shape)}, not group numbers", REDO)
    for name, tensor in tensors.items():
        if name != "index" and (not tensor.is_floating_point() or tensor.dim() == 0 or tensor.shape[0] != index.numel()):
            raise BrokenFile(file, f"is not a finished unit: its {name!r} is {tensor.dtype} of shape {list(tensor.shape)}, not a row per group", REDO)
    return tensors
