"""Every command line that a config header or the README shows is parsed (or run) by a test.

Config headers follow one grammar: the command that runs the config (`#   lit-activation <sub>
--config configs/<name>.yaml`), other full commands on their own `#   lit-activation ...` lines,
and `# <Label>: --flag value ...` lines whose flags are overrides of the config's command: two
spaces separate independent overrides, single spaces join the flags of one.
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from lit_activation.cli import ActivationCLI, main
from lit_activation.cli.errors import one_line
from tests.helpers.cli import build_not_run
from tests.helpers.pages import tool_commands

ROOT = Path(__file__).parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def header(config: Path) -> list[str]:
    """The comment lines before the first YAML key, without their '#'."""
    lines = []
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


def fragments(text: str) -> list[list[str]]:
    """Independent overrides of a header line: groups separated by two spaces (one group's flags go
    together, e.g. a class and its options)."""
    groups = [shlex.split(group) for group in re.split(r" {2,}", text.strip()) if group.strip()]
    for group in groups:
        assert group[0].startswith("--"), f"a header override must start with a flag, got {text!r}"
    return groups


def commands_and_overrides(config: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(full commands, override fragments) of a config's header, paths made absolute."""
    commands, overrides = [], []
    for line in header(config):
        if line.startswith("lit-activation "):
            commands.append(shlex.split(line.replace("configs/", f"{ROOT / 'configs'}/"))[1:])
        elif "--" in line:
            overrides += fragments(line[line.index("--") :])  # the label ends where the first flag starts
    return commands, overrides


def instantiates(args: list[str], monkeypatch) -> ActivationCLI:
    """The CLI accepts `args` and builds every class they name (model, data, trainer, callbacks, the
    pruning and zero-shot groups), so each class's own checks in `__init__` run; the subcommand itself
    is recorded, not run (nothing loads). `--print_config` alone would only parse."""
    cli, calls = build_not_run(args, monkeypatch)
    assert len(calls) == 1 and calls[0]["model"] is cli.model and cli.model.model is None, args  # built, not loaded, not run
    return cli


CASES = [(c, cmd) for c in CONFIGS for cmd in commands_and_overrides(c)[0]]


@pytest.mark.parametrize(("config", "command"), CASES, ids=[f"{c.stem}:{' '.join(cmd[:1] + cmd[3:])[:40]}" for c, cmd in CASES])
def test_header_commands_parse(config, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative outputs (save_dir, runs/) resolve in an empty directory
    instantiates(command, monkeypatch)


def own_command(config: Path) -> list[str]:
    commands, _ = commands_and_overrides(config)
    return next(cmd for cmd in commands if cmd[2].endswith(config.name))


@pytest.mark.slow
def test_header_overrides_parse_with_the_configs_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checked, refused = 0, []
    for config in CONFIGS:
        own = own_command(config)
        for fragment in commands_and_overrides(config)[1]:
            try:
                cli = instantiates([*own, *fragment], monkeypatch)
            except Exception as err:  # every refused override is listed, not only the first
                refused.append(f"{config.name}: {' '.join(fragment)}: {one_line(err)}")
                continue
            flags = {fragment[i]: fragment[i + 1] for i in range(0, len(fragment) - 1, 2) if fragment[i].startswith("--")}
            if "--pruning.sparsity" in flags:  # the override reached the object that runs, not only the parsed config
                (pruning,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "Pruning"]
                assert pruning.sparsity == float(flags["--pruning.sparsity"]), (config.name, fragment)
            checked += 1
    assert not refused, "\n".join(refused)
    assert checked >= 20  # the headers document overrides: they are all built


@pytest.mark.parametrize(
    ("config", "override", "message"),
    [
        ("prune_uniform", ["--pruning.sparsity", "1.5"], r"Sparsity 1.5 is outside \[0, 1\)"),
        ("prune_2of4", ["--pruning.sparsity", "0.6"], r"N:M 2:4 prunes 0.500 of the weights, but sparsity 0.6 was asked"),
        ("prune_uniform", ["--pruning.calibration.samples", "0"], r"calibration needs samples >= 1"),
        ("prune_uniform", ["--data.init_args.dataset", "boolq"], r"Perplexity needs running text; 'boolq' is a prompt set"),
        ("counts", ["--data.init_args.mode", "set"], r"mode 'set' takes exactly one set of texts, got \['boolq'"),
        ("sts", ["--model.engine.tile_mb", "0"], r"tile_mb must be > 0"),
        ("counts", ["--model.engine.compute_dtype", "bfloat16", "--model.engine.fused_linear", "true"], r"fuses split products .* 'bfloat16'"),
    ],
    ids=["sparsity-1.5", "2of4-at-0.6", "calibration-samples-0", "perplexity-on-prompts", "set-of-five-datasets", "tile_mb-0", "fused_linear-in-bf16"],
)
def test_a_bad_override_is_refused_when_the_classes_are_built(config, override, message, tmp_path, monkeypatch):
    """The check that the header overrides go through: it runs each class's `__init__` validation."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        instantiates([*own_command(ROOT / "configs" / f"{config}.yaml"), *override], monkeypatch)


def readme_commands() -> list[str]:
    """Command lines of the README's and the docs' bash blocks (continuation lines joined); what a
    launcher (srun, torchrun) or an environment prefix starts is taken from its line."""
    return tool_commands()


def interrupted_run_for(args: list[str], monkeypatch) -> None:
    """The interrupted run a `--resume` line resumes: the run dir its options would write (version_0
    of the config's logger), with the config.yaml they save and a progress/ left behind."""
    plain = [a for i, a in enumerate(args) if a != "--resume" and (i == 0 or args[i - 1] != "--resume")]
    cli = instantiates(plain, monkeypatch)
    run = Path(cli.trainer.logger.save_dir) / cli.trainer.logger.name / "version_0"
    (run / "progress").mkdir(parents=True)
    (run / "config.yaml").write_text(cli._parser(args[0]).dump(cli.config[args[0]], skip_none=False))


LAYERS, DATASETS = 6, ["humaneval", "news"]


def write_counts(run: Path) -> None:
    (run / "counts.json").write_text(json.dumps({
        "model": "smollm2-135m", "target": "max_logit", "gamma": 2e-5, "n_layers": LAYERS, "layer_params": [1000] * LAYERS,
        "datasets": {d: {"n_samples": 8, "layer_counts": [900 - 100 * i - 10 * k for i in range(LAYERS)], "quantile_counts": {}}
                     for k, d in enumerate(DATASETS)},
    }))


def write_llmdcos(run: Path) -> None:
    pairs = {f"{x}-{y}": [[0.9 - 0.1 * i + 0.01 * j for i in range(LAYERS)] for j in range(4)] for x in DATASETS for y in DATASETS if x <= y}
    (run / "llmdcos.json").write_text(json.dumps({
        "model": "smollm2-135m", "datasets": DATASETS, "n_pairs": 4, "n_layers": LAYERS, "matrix": [[0.8, 0.3], [0.3, 0.7]],
        "matrix_layers": [3, 4], "llmdcos": pairs,
    }))


def write_allpairs(run: Path) -> None:
    (run / "allpairs.json").write_text(json.dumps({
        "model": "smollm2-135m", "dataset": "lee", "n_texts": 3, "layers": [3, 5], "spearman": 0.2, "p_value": 0.01,
        "per_layer_spearman": [0.1 * i for i in range(LAYERS)], "hidden_spearman": 0.4, "tfidf_spearman": 0.25,
    }))


def write_sts(run: Path) -> None:
    gold, sums = [0.5, 1.5, 2.0, 3.5, 4.0, 4.5], [1.0, 1.2, 2.1, 2.0, 3.3, 3.9]
    (run / "sts.json").write_text(json.dumps({
        "model": "smollm2-135m", "dataset": "stsb", "n_pairs": len(gold), "layers": [3, 5], "spearman": 0.94, "p_value": 0.005,
        "gold": gold, "layer_sum": sums, "per_layer_spearman": [0.1 * i for i in range(LAYERS)],
    }))


def write_compare(out: Path) -> None:
    header = ["method", "pruning_metric", "sparsity", "seed", "perplexity", "metric", "achieved_sparsity", "zeroshot", "seconds"]
    rows = [["dense", "-", 0.0, 0, 20.0], ["uniform", "wanda", 0.5, 0, 31.0], ["activation", "wanda", 0.5, 0, 29.0], ["owl", "wanda", 0.5, 0, 30.0]]
    (out / "results.csv").write_text("\n".join(",".join(map(str, r)) for r in [header, *(r + ["ppl/wiki", r[2], "{}", 1.0] for r in rows)]) + "\n")
    (out / "comparison.json").write_text(json.dumps({"fixed": {"model": "smollm2-135m", "evaluation": "ppl/wiki", "metric": "wanda"}}))


# What a run holds, by its logger's (or compare directory's) name, and how the report names it.
KINDS = [("compare", write_compare, "compare"), ("allpairs", write_allpairs, "allpairs"), ("similarity", write_llmdcos, "llmdcos"),
         ("llmdcos", write_llmdcos, "llmdcos"), ("counts", write_counts, "counts"), ("sts", write_sts, "sts")]


def write_readme_report_inputs(root: Path, named: list[str]) -> dict[Path, str]:
    """The runs a page's `report` line names, as their writers lay them out (a logger dir's run in its
    version_0, a compare output dir as it is): small, with made-up values. Returns what each holds,
    by the path the report reads, relative to `root`."""
    inputs = {}
    for arg in named:
        name = Path(arg).parts[1]
        kind = next(((write, holds) for part, write, holds in KINDS if part in name), None)
        assert kind is not None, f"a report line names {arg}: add what such a run holds to KINDS"
        run = Path(arg) if holds_runs_directly(arg, kind[1]) else Path(arg) / "version_0"
        (root / run).mkdir(parents=True, exist_ok=True)
        kind[0](root / run)
        inputs[run] = kind[1]
    return inputs


def holds_runs_directly(arg: str, holds: str) -> bool:
    """A compare output dir, or a versioned run dir, is read as it is; a logger dir through its newest run."""
    return holds == "compare" or Path(arg).name.startswith("version_")


@pytest.mark.slow
@pytest.mark.parametrize("line", readme_commands(), ids=lambda line: re.sub(r"[^\w.]+", "-", line.replace("lit-activation ", ""))[:60])
def test_readme_commands_parse(line, tmp_path, monkeypatch, capsys):
    words = shlex.split(line.replace("configs/", f"{ROOT / 'configs'}/"))
    if words[0].endswith("python") or words[0] == "python":  # a benchmark script: its arguments parse
        script = ROOT / words[1]  # run as __main__ in this process, whose imports (torch, Lightning) it shares
        monkeypatch.chdir(ROOT)
        monkeypatch.syspath_prepend(str(script.parent))  # its sibling modules (machine.py, timing.py), as `python script` finds them
        monkeypatch.setattr(sys, "argv", [str(script), *words[2:], "--help"])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(script), run_name="__main__")
        assert exit_.value.code == 0, capsys.readouterr().err[-1500:]
        return
    args = words[1:] if words[0] == "lit-activation" else words[3:]
    monkeypatch.chdir(tmp_path)  # the line's relative paths (runs/..., outputs) resolve in an empty directory
    saved = [Path(a) for a in args if a.endswith("config.yaml") and a.startswith("runs/")]
    for path in saved:  # a line that re-runs a run's saved config: one as a run saves it
        path.parent.mkdir(parents=True)
        shutil.copy(ROOT / "tests" / "cli" / "saved_configs" / "predict_counts.yaml", path)
    if args[0] in ("--version", "--help", "-h"):  # the tool's own: what it prints
        main(args)
        out = capsys.readouterr().out
        assert out.startswith("lit-activation ") if args[0] == "--version" else "SUBCOMMAND --help" in out
        return
    if args[0] != "report":
        if "--resume" in args:
            interrupted_run_for(args, monkeypatch)
        instantiates(args, monkeypatch)
        return
    # `report` reads finished runs: the line runs, as written, on the runs it names
    runs = [a for a in args[1:] if not a.startswith("--")]
    inputs = write_readme_report_inputs(tmp_path, runs)
    named = list(inputs)
    assert named, "a report line names its runs"
    main(args)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == str(Path("runs") / "report" / "version_0" / "report.md") and (tmp_path / last).is_file()
    record = json.loads((tmp_path / "runs" / "report" / "version_0" / "report.json").read_text())
    assert [(Path(r["path"]), r["holds"]) for r in record["inputs"]] == [(path, [inputs[path]]) for path in named]
    assert record["settings"]["seed"] == 0 and record["settings"]["resamples"] >= 100  # the defaults of the line


def test_the_readme_and_the_docs_show_commands():
    commands = readme_commands()
    assert len(commands) >= 20 and any(c.startswith("lit-activation predict") for c in commands)
