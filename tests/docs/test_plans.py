"""A plan shown beside a launch is the plan of that launch: in a bash block, every `lit-activation plan`
line and every run of the same config (predict, validate, compare) set the same model, data, pruning
and trainer layout (devices per node, nodes, strategy and its mesh), `plan --devices N` standing for
`--trainer.devices N`. A plan's output pasted after its block names the model and the layout of its
own line. Parsed, not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.cli import parse_command
from tests.helpers.pages import PAGES, Command, commands, value_of

LAUNCHES = ("predict", "validate", "compare")


def run_of(command: Command, parsers: dict) -> dict:
    """What a command would run, as far as its memory goes: model, data, pruning and trainer layout."""
    config = parse_command(parsers, command.words)
    trainer = config.trainer
    devices = config.devices if command.subcommand == "plan" and config.devices is not None else trainer.devices  # "8" or 8
    strategy = trainer.strategy if isinstance(trainer.strategy, str) else trainer.strategy.as_dict()
    run = {"model": config.model.as_dict(), "data": config.data.as_dict(), "devices": str(devices), "num_nodes": trainer.num_nodes, "strategy": strategy}
    if command.subcommand != "predict":
        run["pruning"] = config.pruning.as_dict()
    return run


def differences(a: dict, b: dict) -> list[str]:
    return [f"{key}: {a.get(key)!r} vs {b.get(key)!r}" for key in sorted(set(a) & set(b)) if a[key] != b[key]]


def unlike_plans(page: Path, parsers: dict) -> list[str]:
    """Plan lines whose launch beside them (same block, same config) runs another model, data or layout."""
    page_commands = commands(page)
    bad = []
    for plan in (c for c in page_commands if c.subcommand == "plan"):
        config = value_of(plan.words, "--config")
        beside = [c for c in page_commands if c.block == plan.block and c.subcommand in LAUNCHES and value_of(c.words, "--config") == config]
        planned = run_of(plan, parsers)
        for launch in beside:
            if diff := differences(planned, run_of(launch, parsers)):
                bad.append(f"{plan.line}\n  beside {launch.line}\n  differ in {diff}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_plan_beside_a_launch_plans_that_launch(page, parsers):
    bad = unlike_plans(page, parsers)
    assert bad == [], f"{page.name}:\n" + "\n".join(bad)


def plan_output(command: Command) -> str | None:
    """The plan a page shows as this command's output: a code block after it starting `Memory plan:`,
    before the next command's block."""
    match = re.search(r"```\w*\n(Memory plan: .*?)```", command.after, flags=re.S)
    return match.group(1) if match else None


def unlike_outputs(page: Path, parsers: dict) -> list[str]:
    """Pasted plans whose heading names another model or layout than the plan line above them."""
    bad = []
    page_commands = commands(page)
    for plan in (c for c in page_commands if c.subcommand == "plan"):
        if [c for c in page_commands if c.block == plan.block and c.subcommand == "plan"][-1] is not plan:
            continue  # only the block's last plan can be the one whose output follows
        output = plan_output(plan)
        if output is None:
            continue
        config = parse_command(parsers, plan.words)
        run = run_of(plan, parsers)
        sharded = isinstance(run["strategy"], dict) and run["strategy"]["class_path"].endswith("ModelParallelStrategy")
        where = f"{run['devices']} × {config.device_type or 'cpu'}" if run["num_nodes"] == 1 else f"{run['num_nodes']} nodes × {run['devices']} ×"
        heading = output.splitlines()[0]
        expected = [f"Memory plan: {run['model']['model']},", f"weights {run['model']['dtype']},", where]
        if sharded:
            group = run["strategy"].get("init_args", {}).get("tensor_parallel_size", "auto")
            expected.append(f"(sharded over groups of {run['devices'] if group == 'auto' else group})")
        if sharded != ("(sharded over groups of" in heading) or not all(part in heading for part in expected):
            bad.append(f"{plan.line}\n  shows {heading}\n  expected {expected}, {'sharded' if sharded else 'not sharded'}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_plan_shown_is_the_plan_of_its_command(page, parsers):
    bad = unlike_outputs(page, parsers)
    assert bad == [], f"{page.name}:\n" + "\n".join(bad)


SHARDED = """--trainer.strategy '{"class_path": "lightning.pytorch.strategies.ModelParallelStrategy"}'"""


def test_a_plan_of_another_layout_than_its_launch_is_caught(parsers, tmp_path):
    page = tmp_path / "page.md"
    plan = "lit-activation plan --config configs/counts.yaml --device_type cuda --memory_gb 80"
    launch = f"lit-activation predict --config configs/counts.yaml --trainer.devices 8 {SHARDED}"
    page.write_text(f"```bash\n{plan} --devices 8\n{launch}\n```\n")
    assert len(unlike_plans(page, parsers)) == 1  # 8 copies planned, 8 shards launched
    page.write_text(f"```bash\n{plan} --devices 8 {SHARDED}\n{launch}\n```\n")
    assert unlike_plans(page, parsers) == []
    page.write_text(f"```bash\n{plan} --trainer.devices 8 {SHARDED}\n{launch} --model.engine.checkpoint_blocks true\n```\n")
    assert len(unlike_plans(page, parsers)) == 1  # another engine
    page.write_text(f"```bash\n{plan} --devices 4 {SHARDED}\n```\n\n```text\nMemory plan: meta-llama/Llama-2-7b-hf, weights bfloat16, "
                    "compute float32, per device of 8 × cuda (sharded over groups of 8)\n```\n")
    assert len(unlike_outputs(page, parsers)) == 1  # the output of another layout
    page.write_text(page.read_text().replace("--devices 4", "--devices 8"))
    assert unlike_outputs(page, parsers) == []
