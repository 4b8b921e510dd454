"""Each subcommand's help: its options laid out this project's first, the Trainer options that apply after; what
only fitting uses is left out of the help, never out of the parser. The tool's own help, which needs no Lightning:
command.py."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser

from lit_activation.cli.errors import class_names, known_classes

EPILOG = (
    "--verbose (no value): show all that Lightning and the libraries print; --debug: the traceback of an error.\n"
    "A class option's own options: --OPTION.help CLASS, e.g. --data.help ActivationDataModule."
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


# --GROUP CONFIG lines, not listed
_CONFIG_LOADERS = ("trainer", "model", "model.engine", "pruning", "pruning.calibration", "pruning.expert_inputs", "pruning.experts", "zeroshot")


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
