"""`lit-activation`: one LightningCLI over ActivationModule, the data modules and the analyses.

    lit-activation predict  --config configs/counts_embedded.yaml   # scores: counts, LLMDcos, STS
    lit-activation validate --config configs/prune_embedded.yaml    # pruning + perplexity (+ zero-shot)
    lit-activation compare  --config configs/compare_embedded.yaml  # allocations × metrics × sparsities × seeds
    lit-activation plan     --config configs/counts.yaml            # predicted memory, nothing loaded
    lit-activation report   RUN_DIR [RUN_DIR ...]                   # findings report from finished runs

`lit-activation --help` lists them, `<subcommand> --help` a subcommand's options (this project's
first, Lightning's that apply after; the rest still parse, as saved configs name them).

A mistake in the input prints one line, `error: <message>` (with the closest option or class when
one was mistyped), and exits with status 2 before any work; `--debug` (or LIT_ACTIVATION_DEBUG=1)
shows the traceback instead. A run prints one line per phase; `--verbose` (or LIT_ACTIVATION_VERBOSE=1)
shows all that Lightning and the libraries print.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fnmatch
import functools
import importlib
import logging
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import yaml
from jsonargparse import ArgumentError, DefaultHelpFormatter
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_activation import __version__, report
from lit_activation.callbacks.pruning import Pruning
from lit_activation.callbacks.zeroshot import ZeroShotEval
from lit_activation.data import datamodule, perplexity  # noqa: F401 - the data modules --data accepts by name, listed in --help
from lit_activation.deprecated import DeprecatedPath
from lit_activation.distributed.heartbeat import Heartbeat
from lit_activation.models.architectures import published_config
from lit_activation.models.loading import check_source
from lit_activation.module import ActivationModule
from lit_activation.resume import check_same_results, find_run
from lit_activation.trainer import ActivationTrainer

# Raised for bad input (values, files, a plan that cannot fit, NaN scores): one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, MemoryError, FloatingPointError, ArgumentError)
DEBUG_ENV = "LIT_ACTIVATION_DEBUG"
VERBOSE_ENV = "LIT_ACTIVATION_VERBOSE"

# jsonargparse reports a class that refused its arguments inside a list of the types it tried;
# these lines of that list are its own bookkeeping, not the reason.
_GENERIC = (
    "Expected a <class 'NoneType'>", "Not a valid subclass", "Problem with given class_path", "Subclass types expect",
    "a class path", "a dict", "Does not validate", "Given value", "Subtypes:", "Errors:",
)


# A class option given a name that is no class: jsonargparse tried it as a config file, then as an import path.
_NOT_A_CLASS = re.compile(r"^- Expected a dot import path string: (.+)$")
_SEE_HELP = "; --help lists the accepted classes"  # said when the accepted classes are not known here


# A class option (`data`, a callback) that refused one of its own options: jsonargparse reports it
# inside the union of types it tried, and only the chain of causes still holds the option and reason.
_CLASS_REFUSED = re.compile(r"^Problem with given class_path '([\w.]+)':")
_KEY = re.compile(r'^Parser key "([^"]+)":')
_REFUSED_OPTION = re.compile(r"^Option '([^']+)' is not accepted$")
_UNRECOGNIZED = re.compile(r"^unrecognized arguments: (.*)$")
# A value outside a list of names, as this project says it: "Unknown zero-shot tasks ['boolqq']; accepted: [...]".
_UNKNOWN_NAME = re.compile(r"^Unknown [^;]*?'([^']+)'[^;]*; (?:accepted|known): \[([^\]]*)\]")


def _refusal(err: BaseException) -> tuple[list[str], str, str] | None:
    """(the option's keys, the innermost class that refused, its reason) from the causes of `err`, or
    None when no class refused its options."""
    chain: list[str] = []
    cause: BaseException | None = err
    while cause is not None and len(chain) < 32:
        chain.append(str(cause).strip())
        cause = cause.__cause__
    refused = next((m.group(1) for m in map(_CLASS_REFUSED.match, reversed(chain)) if m), None)  # the innermost class
    keys = list(dict.fromkeys(m.group(1) for m in map(_KEY.match, chain) if m))
    if refused is None or not keys or not chain[-1]:
        return None
    return keys, refused, chain[-1].splitlines()[-1].strip()


def _class_option_error(err: BaseException) -> str | None:
    """'Parser key "data.init_args.num_samples" (ActivationDataModule): <reason>' from the causes of
    `err`, or None when no class refused its options."""
    refusal = _refusal(err)
    if refusal is None:
        return None
    keys, refused, reason = refusal
    return f'Parser key "{".init_args.".join(keys)}" ({refused.rsplit(".", 1)[-1]}): {reason}'


def _not_a_class(message: str) -> tuple[str, str] | None:
    """(option, name) when a class option was given a name that is no class it knows."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    key = _KEY.match(lines[0]) if lines else None
    unknown = [m.group(1) for m in map(_NOT_A_CLASS.match, lines) if m]
    if key and unknown and any(line.startswith("- Expected a path but ") for line in lines):
        return key.group(1), unknown[0]
    return None


def _reason(message: str | BaseException) -> str:
    """The reason in a (possibly nested, multi-line) parser error: its first specific line, after the
    option it is about (`Parser key "...":`) when the error names one."""
    if isinstance(message, BaseException) and (refused := _class_option_error(message)):
        return refused
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else str(message)
    key = lines[0] if lines[0].startswith("Parser key ") and lines[0].endswith(":") else None
    if not_a_class := _not_a_class(str(message)):
        return f"{key} {not_a_class[1]!r} is neither a class name nor a class_path of this option{_SEE_HELP}"
    specific = [line.lstrip("- ").strip() for line in lines if line.startswith("- ") and not line.lstrip("- ").startswith(_GENERIC)]
    if specific:
        return f"{key} {specific[0]}" if key else specific[0]
    return " ".join(lines) if len(lines) <= 3 else lines[0]


def one_line(message: str | BaseException) -> str:
    """An error as the one line a user reads: its reason, and the closest option, class or name when
    one was mistyped (the `hint` ActivationCLI.parse_arguments gives a parser error, else from the line)."""
    line = _reason(message)
    hint = getattr(message, "hint", None)
    if hint:
        return f"{line.removesuffix(_SEE_HELP)}; {hint}"
    return _suggest_a_name(line)


def _suggest_a_name(line: str) -> str:
    """'Unknown X 'name'; accepted: [...]' with 'did you mean ...?' when one accepted name is close."""
    match = _UNKNOWN_NAME.match(line)
    if match is None or "did you mean" in line:
        return line
    best = closest(match.group(1), re.findall(r"'([^']+)'", match.group(2)))
    if best is None:
        return line
    cut = line.rindex("; ", 0, match.start(2))  # before "accepted: [" or "known: ["
    return f"{line[:cut]}; did you mean {best!r}? {line[cut + 2 :]}"


def closest(word: str, choices: Sequence[str], cutoff: float = 0.6) -> str | None:
    """The choice closest to a mistyped word, if any is close (case aside: `sparsegpt` is SparseGPT)."""
    by_lower = {choice.lower(): choice for choice in choices}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[matches[0]] if matches else None


def closest_option(option: str, options: Sequence[str]) -> str | None:
    """The option closest to a mistyped one: among its siblings (`--trainer.devics` -> `--trainer.devices`)
    by the last name, else among all by the whole (`--modle.model` -> `--model.model`)."""
    head, _, leaf = option.rpartition(".")
    siblings = {o.rpartition(".")[2]: o for o in options if head and o.rpartition(".")[0] == head}
    best = closest(leaf, list(siblings)) if siblings else None
    return siblings[best] if best else closest(option, options, cutoff=0.8)


def class_options(class_path: str) -> list[str]:
    """A class's options as jsonargparse reads them (its signature, followed through **kwargs)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(_import(class_path), fail_untyped=False)
    # argparse lists a parser's actions in `_actions` only
    return list(dict.fromkeys(a.dest.split(".")[0] for a in parser._actions if a.option_strings and a.dest != "help"))


def known_classes(action: argparse.Action | None) -> list[str]:
    """The class paths a class option accepts, as its help lists them (jsonargparse's `extra_help`)."""
    extra = action.extra_help() if action is not None and hasattr(action, "extra_help") else ""
    _, _, paths = extra.partition("known subclasses: ")
    return [p.strip() for p in paths.split(",") if p.strip()]


def class_names(paths: Sequence[str]) -> str:
    """Class paths as the names an option accepts: without the bases that others listed extend (an
    option's own base type), this project's first, and in a long list only they are named."""
    classes = {path: _import(path) for path in paths}
    bases = {path for path, cls in classes.items() if isinstance(cls, type) and any(
        other is not cls and isinstance(other, type) and issubclass(other, cls) for other in classes.values())}
    named = [(path.rsplit(".", 1)[-1], path.startswith("lit_activation.")) for path in paths if path not in bases]
    own = [name for name, is_own in named if is_own]
    others = [name for name, is_own in named if not is_own]
    if own and len(named) > 8:
        return f"{', '.join(own)} and {len(others)} of Lightning's"
    return ", ".join(own + others)


def _import(path: str) -> object:
    """The object a dotted path names, or None."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def suggestion(parser: argparse.ArgumentParser, err: BaseException) -> str | None:
    """'did you mean ...?' for a mistyped option or class name in a parser error, from the parser's own
    options, a class's options, or the classes an option accepts (named too)."""
    message = str(err)
    # argparse lists a parser's actions in `_actions` only
    if unrecognized := _UNRECOGNIZED.match(message.strip()):
        options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        words = [w.split("=")[0] for w in unrecognized.group(1).split() if w.startswith("--")]
        best = closest_option(words[0], options) if words else None
        return f"did you mean {best}?" if best else None
    if refusal := _refusal(err):
        keys, refused, reason = refusal
        option = _REFUSED_OPTION.match(reason)
        best = closest(option.group(1), class_options(refused)) if option else None
        return f"did you mean --{'.init_args.'.join(keys)}.init_args.{best}?" if best else None
    if not_a_class := _not_a_class(message):
        key, name = not_a_class
        paths = known_classes(next((a for a in parser._actions if a.dest == key), None))
        if not paths:
            return None
        best = closest(name, [p.rsplit(".", 1)[-1] for p in paths])
        return (f"did you mean {best}? " if best else "") + f"accepted: {class_names(paths)}"
    return None


# Subcommands that prune and evaluate: they get the fixed `pruning` and `zeroshot` groups.
PRUNING_SUBCOMMANDS = ("validate", "compare", "plan")
# Subcommands that write their results to the logger's version dir (compare writes to its output_dir, plan nothing).
WRITING_SUBCOMMANDS = ("predict", "validate")


def check_new_log_dirs(loggers: list, config) -> None:  # noqa: ANN001 - the parsed `trainer.logger` value
    """A logger given an explicit version must not point at an existing run dir (runs/NAME/version_N).

    Checked after the classes are built and before the subcommand runs, so the model is never loaded
    for a run that would stop at Lightning's SaveConfigCallback (config.yaml exists) or overwrite results.
    Loggers without a version (the default) take the next free version_N and are not checked.
    """
    configs = config if isinstance(config, list) else [config]
    for logger, entry in zip(loggers, configs, strict=False):
        init_args = getattr(entry, "init_args", None) or {}
        version = init_args.get("version") if hasattr(init_args, "get") else None
        if version is None or not isinstance(logger, (TensorBoardLogger, CSVLogger)):
            continue
        path = Path(logger.log_dir)
        if path.exists():
            raise FileExistsError(
                f"log dir {path} already exists (trainer.logger version {version!r}); a run's results are never overwritten. "
                "Choose another --trainer.logger.init_args.version or name, or leave version unset (null) for the next free version_N"
            )


# What Lightning writes into a run dir before any result. A run that fails with only these in its new
# dir has that dir removed: it would take a version number and look like a run, holding nothing.
BOOKKEEPING = ("config.yaml", "hparams.yaml", "events.out.tfevents.*")


def discard_empty_run_dirs(paths: list[Path], parents: Sequence[Path] = ()) -> None:
    """Remove each of `paths` (run dirs this process created) that holds nothing but BOOKKEEPING files,
    then each of `parents` (the dirs above them this process created, deepest first) left empty."""
    for path in paths:
        if path.is_dir() and all(f.is_file() and any(fnmatch.fnmatch(f.name, p) for p in BOOKKEEPING) for f in path.iterdir()):
            shutil.rmtree(path)
    for parent in parents:
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def missing_parents(path: Path) -> list[Path]:
    """The dirs above `path` that do not exist yet, deepest first: those creating it would create."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


# ---- help: the tool's own, and each subcommand's with this project's options first

SUBCOMMAND_HELP = {
    "predict": "score parameters on inputs and run the analyses: counts, LLMDcos, STS, all pairs",
    "validate": "prune the model, then measure perplexity (and zero-shot accuracy)",
    "compare": "a resumable sweep: dense vs allocations × metrics × sparsities × seeds",
    "plan": "the predicted peak memory of a config, per device; loads nothing",
    "report": "the findings report of finished runs",
}
SUBCOMMANDS = tuple(SUBCOMMAND_HELP)
FLAGS_HELP = (
    "  --verbose     show all that PyTorch Lightning and the libraries print (or LIT_ACTIVATION_VERBOSE=1)\n"
    "  --debug       show the traceback of an error (or LIT_ACTIVATION_DEBUG=1)"
)


EPILOG = (
    "--verbose (no value): show all that Lightning and the libraries print; --debug: the traceback of an error.\n"
    "A class option's own options: --OPTION.help CLASS, e.g. --data.help ActivationDataModule."
)


def tool_help() -> str:
    """`lit-activation --help`: the subcommands, one line each, and how to get a subcommand's help."""
    rows = "\n".join(f"  {name:<12}{text}" for name, text in SUBCOMMAND_HELP.items())
    return (
        "usage: lit-activation SUBCOMMAND [--config CONFIG] [--OPTION VALUE ...]\n\n"
        "Taylor activation patterns of LLM parameters, LLMDcos and activation-guided pruning.\n\n"
        f"subcommands:\n{rows}\n\n"
        "options:\n  -h, --help    show this help and exit\n  --version     print the version and exit\n"
        f"{FLAGS_HELP}\n\n"
        "A subcommand's options: lit-activation SUBCOMMAND --help, e.g.\n"
        "  lit-activation predict --help\n"
        "  lit-activation predict --config configs/counts_embedded.yaml"
    )


# Lightning's Trainer options each subcommand lists: those that act on what it runs. Fitting's (epochs,
# steps, gradient clipping, checkpointing, sanity checks...), test's, and those this tool sets itself
# (inference_mode: scores are gradients) or that turn off what it writes (barebones) are not listed;
# every one still parses, as saved configs name them all.
_DEVICES = ("accelerator", "strategy", "devices", "num_nodes", "precision", "plugins")
_RUN = ("logger", "fast_dev_run", "enable_progress_bar", "deterministic", "use_distributed_sampler", "profiler", "detect_anomaly", "default_root_dir")
TRAINER_SHOWN = {
    "predict": (*_DEVICES, "callbacks", "limit_predict_batches", *_RUN),
    "validate": (*_DEVICES, "callbacks", "limit_val_batches", *_RUN),
    "compare": (*_DEVICES, "enable_progress_bar", "deterministic"),  # each run of the sweep takes these only
    "plan": (*_DEVICES, "callbacks"),  # what the plan counts
}
# A subcommand's own options that do nothing here: predict_step returns nothing, and nothing is trained
# that a checkpoint would restore.
_UNUSED = ("return_predictions", "ckpt_path", "weights_only")
_CONFIG_LOADERS = ("trainer", "model", "model.engine", "pruning", "pruning.calibration", "zeroshot")  # --GROUP CONFIG

# Short help for Lightning's options (its own texts are written for training), and for the general ones.
BRIEF_HELP = {
    "help": "show this help and exit",
    "config": "a YAML config; with several, later ones win",
    "print_config": "print the configuration after the other arguments, and exit (flags: skip_default, skip_unset)",
    "seed_everything": "seed of torch, numpy and random (true: PL_GLOBAL_SEED or 0)",
    "trainer.accelerator": "cpu, gpu (CUDA), mps or auto",
    "trainer.strategy": "auto, ddp (a copy of the model per device) or ModelParallelStrategy (the model sharded)",
    "trainer.devices": "how many devices (2), which ([0, 2]), all (-1) or auto",
    "trainer.num_nodes": "machines taking part, each with `devices` devices",
    "trainer.precision": "Lightning's precision (default 32-true); scores use --model.engine.compute_dtype",
    "trainer.plugins": "Lightning plugins, e.g. a cluster environment (SLURMEnvironment)",
    "trainer.logger": "where a run's results go: save_dir/name/version_N of a TensorBoardLogger (default) or CSVLogger",
    "trainer.callbacks": "the analyses (ActivationCounts, LLMDcos, STSCorrelation, AllPairsSimilarity), other callbacks",
    "trainer.limit_predict_batches": "score only this many batches (an int) or this fraction of them (a float; default: all)",
    "trainer.limit_val_batches": "evaluate only this many batches (an int) or this fraction of them (a float; default: all)",
    "trainer.fast_dev_run": "a quick check: n batches (true: 1), with Lightning's logger off",
    "trainer.enable_progress_bar": "show the progress bar (default: yes)",
    "trainer.deterministic": "deterministic torch algorithms: true, false or warn",
    "trainer.use_distributed_sampler": "let Lightning split the inputs over the processes (DistributedSampler)",
    "trainer.profiler": "time the run's steps: simple, advanced or pytorch",
    "trainer.detect_anomaly": "autograd's anomaly detection in the backward (slow; to find a NaN's origin)",
    "trainer.default_root_dir": "where Lightning writes when there is no logger",
    "data": "a data module by class name, its options as --data.init_args.NAME VALUE",
    "verbose": "print the table of results at the end",
    "device_type": "plan for this device type (cpu, cuda) instead of the trainer's, e.g. GPUs this machine lacks",
    "devices": "plan for this many devices instead of the trainer's",
}
_NO_DEFAULT = ("trainer.logger",)  # a class and its options: the line says it

# Sections of a subcommand's help, in order: (key, title); "own" is the subcommand's own options.
SECTIONS = (
    ("options", "options"),
    ("model", "model (--model.*): the causal LM analysed"),
    ("engine", "how scores are computed (--model.engine.*)"),
    ("data", "data (--data): the inputs"),
    ("analyses", "analyses (--trainer.callbacks): what a run computes and writes"),
    ("pruning", "pruning (--pruning.*): how the model is pruned before it is evaluated"),
    ("calibration", "calibration (--pruning.calibration.*): the batch the pruning metric sees"),
    ("zeroshot", "zero-shot accuracy (--zeroshot.*), after pruning"),
    ("own", "{subcommand}"),
    ("trainer", "trainer (--trainer.*): Lightning's options that apply to {subcommand}"),
)
OWN_TITLES = {"compare": "compare: the sweep", "plan": "plan: the hardware planned for", "predict": "predict's own", "validate": "validate's own"}


def section_of(action: argparse.Action, subcommand: str) -> str | None:
    """The help section an option is listed in, or None when it is not listed (it still parses)."""
    dest = action.dest
    if not action.option_strings or dest in _CONFIG_LOADERS or dest in _UNUSED or dest == "model.engine.rows":
        return None  # links, --GROUP CONFIG, options that do nothing here, rows (set by a sharded run)
    if dest.endswith(".help"):
        return None  # --OPTION.help CLASS, said once in the epilog
    if dest in ("help", "config", "print_config", "seed_everything"):
        return "options"
    prefixes = (("model.engine.", "engine"), ("model.", "model"), ("pruning.calibration.", "calibration"), ("pruning.", "pruning"),
                ("zeroshot.", "zeroshot"))
    for prefix, key in prefixes:
        if dest.startswith(prefix):
            return key
    if dest.split(".")[0] in ("optimizer", "lr_scheduler"):
        return None  # nothing is trained
    if dest == "data":
        return "data"
    if dest.startswith("trainer."):
        option = dest.removeprefix("trainer.")
        if option not in TRAINER_SHOWN[subcommand]:
            return None
        return "analyses" if subcommand == "predict" and option == "callbacks" else "trainer"
    return "own"


def help_sections(parser: argparse.ArgumentParser, subcommand: str) -> list[tuple[str, list[argparse.Action]]]:
    """A subcommand's help: this project's groups, its own options, then Lightning's that apply."""
    sections: dict[str, list[argparse.Action]] = {key: [] for key, _ in SECTIONS}
    for action in parser._actions:  # argparse lists a parser's actions in `_actions` only
        key = section_of(action, subcommand)
        if key is not None:
            sections[key].append(action)
    titles = dict(SECTIONS) | {"own": OWN_TITLES[subcommand]}
    return [(titles[key].format(subcommand=subcommand), actions) for key, actions in sections.items() if actions]


class HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help with short texts for Lightning's options (BRIEF_HELP), class lists by class
    name, no type where the choices or default say it; the options under `first_sentence_of` by their
    first sentence."""

    first_sentence_of: tuple[str, ...] = ()

    def _get_help_string(self, action: argparse.Action) -> str:
        brief = BRIEF_HELP.get(action.dest)
        if brief is None:
            return super()._get_help_string(action)
        own = [n for n in class_names(known_classes(action)).split(", ") if n]
        shown = action.default is not None and action.default is not argparse.SUPPRESS and action.dest not in _NO_DEFAULT
        extra = [f"default: {action.default}"] if shown else []
        extra += [f"classes: {', '.join(own)}"] if action.dest in _CLASS_CHOICES and own else []
        return brief + (f" ({', '.join(extra)})" if extra else "")

    def _expand_help(self, action: argparse.Action) -> str:
        text = super()._expand_help(action)
        if action.dest.startswith(self.first_sentence_of) and action.help and text.startswith(action.help) and text != action.help:
            text = first_sentence(action.help) + text[len(action.help) :]
        return short_class_list(_DEFAULT_CLASS.sub(r"\1", _OBVIOUS_TYPE.sub("", text)))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Each line of a description or epilog filled on its own, its indent kept: their line breaks are meant."""
        lines = [(line[: len(line) - len(line.lstrip())], line.strip()) for line in text.splitlines()]
        return "\n".join(super(HelpFormatter, self)._fill_text(line, width, indent + lead) for lead, line in lines)


# Types the choices, default or class list already say: booleans, literals, plain scalars, a base class.
_OBVIOUS_TYPE = re.compile(r"type: (<class '\w+'>|bool|int|float|str|Literal\[[^\]]*\]|Optional\[(int|float|str)\]|(int|float|str) \| null), ")
_DEFAULT_CLASS = re.compile(r"\{'class_path': '(?:\w+\.)*(\w+)'\}")  # a default class without options, by its name
_CLASS_CHOICES = ("data",)  # brief help that still names the classes accepted


def first_sentence(text: str) -> str:
    """A help text's first sentence (up to a full stop before a capital, a backtick or a parenthesis)."""
    text = " ".join(text.split())
    match = re.match(r"(.+?[^.\s]\.)\s+[`A-Z(]", text)
    return match.group(1) if match else text


_KNOWN_SUBCLASSES = re.compile(r", known subclasses: ([^()]*)\)$")


def short_class_list(text: str) -> str:
    """'(type: <class 'Allocation'>, ..., known subclasses: lit_activation.pruning.allocations.OWL, ...)'
    as '..., classes: OWL, ...)': the names the option accepts."""
    match = _KNOWN_SUBCLASSES.search(text)
    if match is None:
        return text
    names = class_names([p.strip() for p in match.group(1).split(",")])
    return text[: match.start()] + (f", classes: {names}" if names else "") + ")"


class _Sections(argparse.ArgumentParser):
    """argparse's help laid out in the sections `help_sections` gives. A base of ActivationArgumentParser
    after jsonargparse's parser, so that jsonargparse's help context (defaults, types) stays around it."""

    help_sections: Callable[[argparse.ArgumentParser], list[tuple[str, list[argparse.Action]]]] | None = None
    first_sentence_of: tuple[str, ...] = ()  # options listed by their help's first sentence (HelpFormatter)

    def format_help(self, formatter: argparse.HelpFormatter | None = None) -> str:
        if self.help_sections is None:
            return super().format_help() if formatter is None else super().format_help(formatter)  # type: ignore[call-arg]
        # argparse's own format_help (it has no hook for the order of its sections), over ours
        formatter = formatter or self._get_formatter()
        formatter.first_sentence_of = self.first_sentence_of
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        formatter.add_text(self.description)
        for title, actions in self.help_sections(self):
            formatter.start_section(title)
            formatter.add_arguments(actions)
            formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()


class ActivationArgumentParser(LightningArgumentParser, _Sections):
    """LightningArgumentParser whose subcommand help lists this project's options first (`help_sections`)."""


class ActivationCLI(LightningCLI):
    """LightningCLI with the defaults every analysis needs (gradients on, TensorBoard run dirs).

    Subcommands: predict (scores), validate (pruning, perplexity), compare (a pruning sweep), plan
    (memory). Nothing is trained, so fit and test are not offered. Pruning and zero-shot are fixed
    option groups (`--pruning.sparsity`, `--pruning.allocation.init_args.alpha`,
    `--zeroshot.tasks`), so an override never depends on the order of a callback list.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {
            "predict": {"model", "dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
            "compare": {"model", "datamodule"},
            "plan": {"model", "datamodule"},
        }

    def init_parser(self, **kwargs) -> LightningArgumentParser:  # noqa: ANN003 - jsonargparse's parser options
        """Lightning's parser, with this project's help formatter."""
        return super().init_parser(**{"formatter_class": HelpFormatter, **kwargs})

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs):  # noqa: ANN202 - Lightning's signature
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in PRUNING_SUBCOMMANDS:
            parser.add_lightning_class_args(Pruning, "pruning")
            parser.add_lightning_class_args(ZeroShotEval, "zeroshot")
        parser.description = SUBCOMMAND_HELP[subcommand][0].upper() + SUBCOMMAND_HELP[subcommand][1:] + "."
        parser.usage = f"lit-activation {subcommand} [--config CONFIG] [--OPTION VALUE ...]"
        parser.epilog = EPILOG
        parser.help_sections = functools.partial(help_sections, subcommand=subcommand)
        if subcommand in PRUNING_SUBCOMMANDS:  # within 200 lines with the pruning and zero-shot groups; predict's help has them in full
            parser.first_sentence_of = ("model.engine.",)
        return parser

    def parse_arguments(self, parser: LightningArgumentParser, args: list[str] | None) -> None:
        """Lightning's parsing; a mistyped option or class name gets the closest one as its error's hint."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            words = sys.argv[1:] if args is None else list(args)
            subcommand = next((w for w in words if w in self.subcommands()), None)
            if subcommand is not None:
                with contextlib.suppress(Exception):  # a hint is a courtesy: the error itself must get through
                    err.hint = suggestion(self._parser(subcommand), err)
            raise

    def after_instantiate_classes(self) -> None:
        """Before any model loads: the model can be found; an explicit logger version's run dir does
        not exist (rank 0 only: the processes Lightning starts for the other ranks parse the same command
        after rank 0 made it); and note the dirs this run will create."""
        self.new_run_dirs: list[Path] = []
        self.new_parent_dirs: list[Path] = []
        self._check_model()
        if self.subcommand == "predict" and self.config.predict.resume is not None:
            self._check_resume(self.config.predict.resume)
            return
        if self.subcommand in WRITING_SUBCOMMANDS and rank_zero_only.rank == 0:
            check_new_log_dirs(self.trainer.loggers, self.config[self.subcommand].trainer.logger)
            loggers = [lg for lg in self.trainer.loggers if isinstance(lg, (TensorBoardLogger, CSVLogger))]
            self.new_run_dirs = [Path(lg.log_dir) for lg in loggers if not Path(lg.log_dir).exists()]
            parents = {p for run in self.new_run_dirs for p in missing_parents(run)}
            self.new_parent_dirs = sorted(parents, key=lambda p: len(p.parts), reverse=True)  # deepest first

    def _check_model(self) -> None:
        """The model can be found (a path that exists, a hub id that can be read), or one line says why;
        `plan` reads only a config, which the published ones give offline."""
        name = self.model.hparams.model
        if self.subcommand == "plan" and published_config(name) is not None:
            return
        check_source(name)

    def _check_resume(self, resume: str) -> None:
        """Before any model loads: the run to resume exists, is unfinished, and was configured as
        this one in all that changes results; its config.yaml is kept as it is."""
        run = find_run(resume, self.trainer.logger_dir())
        saved = run / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume {resume}: {saved} is missing; without it the run's configuration cannot be checked")
        parser = self._parser(self.subcommand)
        current = yaml.safe_load(parser.dump(self.config[self.subcommand], skip_none=False))
        check_same_results(run, analyses_only(yaml.safe_load(saved.read_text())), analyses_only(current))
        for callback in self.trainer.callbacks:
            if isinstance(callback, SaveConfigCallback):
                callback.already_saved = True  # the interrupted run's config.yaml stays

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; if it fails, the run dirs it created that hold no result are removed."""
        try:
            super()._run_subcommand(subcommand)
        except Exception:
            discard_empty_run_dirs(self.new_run_dirs, self.new_parent_dirs)
            raise

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - LightningArgumentParser
        # The data are tokenized for the model being analysed, with its trust setting, always.
        parser.link_arguments("model.model", "data.init_args.tokenizer")
        parser.link_arguments("model.trust_remote_code", "data.init_args.trust_remote_code")
        parser.set_defaults(
            {
                # Taylor scores are gradients: predict must not run under torch.inference_mode.
                "trainer.inference_mode": False,
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "runs", "name": "lit_activation"},
                },
            }
        )


def analyses_only(config: dict) -> dict:
    """The config with only the callbacks that produce a predict run's results (score callbacks):
    others (progress, logging, probes) may differ in a resumed run."""
    from lit_activation.callbacks.base import ScoreCallback

    def scores(entry: object) -> bool:
        path = entry.get("class_path") if isinstance(entry, dict) else None
        module, _, name = path.rpartition(".") if isinstance(path, str) else ("", "", "")
        try:
            return issubclass(getattr(importlib.import_module(module), name), ScoreCallback)
        except (ImportError, AttributeError, ValueError, TypeError):
            return True  # a class that cannot be imported here is compared as it is

    trainer = config.get("trainer") or {}
    callbacks = trainer.get("callbacks")
    if isinstance(callbacks, list):
        config = {**config, "trainer": {**trainer, "callbacks": [c for c in callbacks if scores(c)]}}
    return config


def build_cli(args: list[str] | None = None, run: bool = True) -> ActivationCLI:
    """Parse `args` (default: the command line) and run the subcommand (run=False: parse and instantiate only).

    Logging and warnings are left as they are: the console entry point, `main`, sets them for a command.
    """
    return ActivationCLI(
        ActivationModule,
        LightningDataModule,
        trainer_class=ActivationTrainer,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": False},
        parser_class=ActivationArgumentParser,
        # raise instead of printing usage and exiting, so that main() can say it in one line
        parser_kwargs={"exit_on_error": False, **{sub: {"exit_on_error": False} for sub in ActivationCLI.subcommands()}},
    )


def check_command_line(args: list[str]) -> None:
    """What the parser would report without naming it: a subcommand that does not exist (its list
    lacks `report`, which is dispatched before it) and a config file that is not YAML."""
    if args and not args[0].startswith("-") and args[0] not in SUBCOMMANDS:
        best = closest(args[0], SUBCOMMANDS)
        hint = f"did you mean {best}? " if best else ""
        raise ValueError(f"unknown subcommand {args[0]!r}; {hint}accepted: {', '.join(SUBCOMMANDS)}")
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("--config", "-c") and Path(value).is_file():
            try:  # the syntax only: what the values mean is jsonargparse's to read (it keeps dates as text)
                yaml.compose(Path(value).read_text(), Loader=yaml.SafeLoader)
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                raise ValueError(f"{flag} {value} is not valid YAML: {getattr(err, 'problem', None) or err}{where}") from None


def lost_connection(err: BaseException) -> bool:
    """Whether an error is a collective that could not complete: a peer gone (gloo, NCCL, the store)."""
    import torch.distributed as dist

    signs = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL", "timed out", "Timed out")
    return isinstance(err, dist.DistError) or any(sign in str(err) for sign in signs)


# ---- the console: what a command prints

# Loggers quieted unless --verbose: Lightning's banner, tips and seed lines are INFO, the hub client's
# retries WARNING; the libraries' errors still show.
QUIET_LEVELS = {
    "lightning.pytorch": logging.WARNING, "lightning.fabric": logging.WARNING, "pytorch_lightning": logging.WARNING,
    "lightning_fabric": logging.WARNING, "huggingface_hub": logging.ERROR,
}
_BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0", "null", "none"}


class ConsoleFormatter(logging.Formatter):
    """This project's log lines as a user reads them: the message; a warning or error says which it is."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
    """warnings.showwarning for the console: `warning: <message>` on one line, without where it was raised."""
    print(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr, flush=True)


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Log lines for a command's life: this project's as ConsoleFormatter says them and the libraries'
    quieted (QUIET_LEVELS); `verbose`: every logger's INFO lines, named. Restored after."""
    project, root = logging.getLogger("lit_activation"), logging.getLogger()
    touched = [project, root, logging.getLogger("gensim"), *map(logging.getLogger, QUIET_LEVELS)]
    saved = [(logger, logger.level, logger.propagate) for logger in touched]
    handler = logging.StreamHandler()
    # verbose: on the root logger, as logging.basicConfig would (not when the caller has set one up)
    target = (None if root.handlers else root) if verbose else project
    if verbose:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.INFO)
    else:
        handler.setFormatter(ConsoleFormatter())
        project.propagate = False  # its lines are said once, here
        for name, level in QUIET_LEVELS.items():
            logging.getLogger(name).setLevel(level)
    project.setLevel(logging.INFO)
    logging.getLogger("gensim").setLevel(logging.WARNING)  # its INFO lines are noise here, even verbose
    if target is not None:
        target.addHandler(handler)
    try:
        yield
    finally:
        if target is not None:
            target.removeHandler(handler)
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate


@contextlib.contextmanager
def console(verbose: bool) -> Iterator[None]:
    """What a command prints, for its life only (logging and warnings are restored after): one line per
    phase (this project's log lines), Lightning's progress bar, and only this project's warnings, one line
    each (DeprecatedPath, the layout's); `verbose`: all that Lightning and the libraries print."""
    with warnings.catch_warnings(), _logging(verbose):
        if not verbose:
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"lit_activation(\.|$)")
            warnings.filterwarnings("default", category=DeprecatedPath)
            warnings.showwarning = one_line_warning  # the documented hook; catch_warnings restores it
        yield


def split_flags(args: Sequence[str]) -> tuple[bool, bool, list[str]]:
    """(--debug given, --verbose given, the other arguments). A `--verbose` followed by true/false is
    validate's own option (Lightning's results table), not this one."""
    debug = verbose = False
    rest: list[str] = []
    for i, word in enumerate(args):
        following = args[i + 1].lower() if i + 1 < len(args) else None
        if word == "--debug":
            debug = True
        elif word == "--verbose" and following not in _BOOLEAN_WORDS:
            verbose = True
        else:
            rest.append(word)
    return debug, verbose, rest


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `lit-activation` console script and of `python -m lit_activation`.

    `argv` (default: the command line) lets tests call it. `report` reads finished runs only, so it
    is dispatched before LightningCLI (lit_activation/report/), under the same one-line errors.
    Logging and warnings are set here, for the command's life (`console`). Returns None: the
    console-script wrapper calls sys.exit(main()), and any other value would be printed and turned
    into exit status 1.
    """
    debug, verbose, args = split_flags(sys.argv[1:] if argv is None else argv)
    if argv is None:
        sys.argv[1:] = args  # LightningCLI reads sys.argv, and so do the processes Lightning starts for other ranks
        for given, variable in ((debug, DEBUG_ENV), (verbose, VERBOSE_ENV)):
            if given:
                os.environ[variable] = "1"  # which those processes inherit
    debug = debug or bool(os.environ.get(DEBUG_ENV))
    verbose = verbose or bool(os.environ.get(VERBOSE_ENV))
    with console(verbose):
        _run(args, argv is None, debug)


def _run(args: list[str], from_command_line: bool, debug: bool) -> None:
    """Dispatch a command: the tool's help or version, `report`, or a LightningCLI subcommand; a user's
    mistake becomes one line and exit status 2, a rank lost in a collective one line and status 1."""
    try:
        if not args or args[0] in ("-h", "--help"):
            print(tool_help())
            return
        if args[0] == "--version":
            print(f"lit-activation {__version__}")
            return
        check_command_line(args)
        if args[0] == "report":
            report.main(args[1:])
            return
        build_cli(None if from_command_line else args)  # None: LightningCLI reads sys.argv, as before
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except (RuntimeError, OSError) as err:  # a collective that failed: was a rank lost?
        lost = Heartbeat.active.explain() if Heartbeat.active is not None and lost_connection(err) else None
        if lost is None or debug:
            raise
        print(f"error: {lost}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
