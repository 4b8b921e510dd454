"""`lit-activation`: one LightningCLI over ActivationModule, the data modules and the analyses.

    lit-activation predict  --config configs/counts_embedded.yaml   # scores: counts, LLMDcos, STS
    lit-activation validate --config configs/prune_embedded.yaml    # pruning + perplexity (+ zero-shot)
    lit-activation compare  --config configs/compare_embedded.yaml  # allocations × sparsities × seeds
    lit-activation plan     --config configs/counts.yaml            # predicted memory, nothing loaded
    lit-activation report   RUN_DIR [RUN_DIR ...]                   # findings report from finished runs

A mistake in the input prints one line, `error: <message>`, and exits with status 2 before any
work; `--debug` (or LIT_ACTIVATION_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import yaml
from jsonargparse import ArgumentError
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_activation import report
from lit_activation.callbacks.pruning import Pruning
from lit_activation.callbacks.zeroshot import ZeroShotEval
from lit_activation.distributed.heartbeat import Heartbeat
from lit_activation.module import ActivationModule
from lit_activation.resume import check_same_results, find_run
from lit_activation.trainer import ActivationTrainer

# Raised for bad input (values, files, a plan that cannot fit, NaN scores): one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, MemoryError, FloatingPointError, ArgumentError)
DEBUG_ENV = "LIT_ACTIVATION_DEBUG"

# jsonargparse reports a class that refused its arguments inside a list of the types it tried;
# these lines of that list are its own bookkeeping, not the reason.
_GENERIC = (
    "Expected a <class 'NoneType'>", "Not a valid subclass", "Problem with given class_path", "Subclass types expect",
    "a class path", "a dict", "Does not validate", "Given value", "Subtypes:", "Errors:",
)


# A class option given a name that is no class: jsonargparse tried it as a config file, then as an import path.
_NOT_A_CLASS = re.compile(r"^- Expected a dot import path string: (.+)$")


# A class option (`data`, a callback) that refused one of its own options: jsonargparse reports it
# inside the union of types it tried, and only the chain of causes still holds the option and reason.
_CLASS_REFUSED = re.compile(r"^Problem with given class_path '([\w.]+)':")
_KEY = re.compile(r'^Parser key "([^"]+)":')


def _class_option_error(err: BaseException) -> str | None:
    """'Parser key "data.init_args.num_samples" (ActivationDataModule): <reason>' from the causes of
    `err`, or None when no class refused its options."""
    chain: list[str] = []
    cause: BaseException | None = err
    while cause is not None and len(chain) < 32:
        chain.append(str(cause).strip())
        cause = cause.__cause__
    refused = next((m.group(1) for m in map(_CLASS_REFUSED.match, reversed(chain)) if m), None)  # the innermost class
    keys = list(dict.fromkeys(m.group(1) for m in map(_KEY.match, chain) if m))
    if refused is None or not keys or not chain[-1]:
        return None
    return f'Parser key "{".init_args.".join(keys)}" ({refused.rsplit(".", 1)[-1]}): {chain[-1].splitlines()[-1].strip()}'


def one_line(message: str | BaseException) -> str:
    """The reason in a (possibly nested, multi-line) parser error: its first specific line, after the
    option it is about (`Parser key "...":`) when the error names one."""
    if isinstance(message, BaseException) and (refused := _class_option_error(message)):
        return refused
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else str(message)
    key = lines[0] if lines[0].startswith("Parser key ") and lines[0].endswith(":") else None
    unknown = [m.group(1) for m in map(_NOT_A_CLASS.match, lines) if m]
    if key and unknown and any(line.startswith("- Expected a path but ") for line in lines):
        return f"{key} {unknown[0]!r} is neither a class name nor a class_path of this option; --help lists the accepted classes"
    specific = [line.lstrip("- ").strip() for line in lines if line.startswith("- ") and not line.lstrip("- ").startswith(_GENERIC)]
    if specific:
        return f"{key} {specific[0]}" if key else specific[0]
    return " ".join(lines) if len(lines) <= 3 else lines[0]

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


def discard_empty_run_dirs(paths: list[Path]) -> None:
    """Remove each of `paths` (run dirs this process created) that holds nothing but BOOKKEEPING files."""
    for path in paths:
        if path.is_dir() and all(f.is_file() and any(fnmatch.fnmatch(f.name, p) for p in BOOKKEEPING) for f in path.iterdir()):
            shutil.rmtree(path)


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

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs):  # noqa: ANN202 - Lightning's signature
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand in PRUNING_SUBCOMMANDS:
            parser.add_lightning_class_args(Pruning, "pruning")
            parser.add_lightning_class_args(ZeroShotEval, "zeroshot")
        return parser

    def after_instantiate_classes(self) -> None:
        """Refuse an explicit logger version whose run dir exists, before any model loads (rank 0 only:
        the processes Lightning starts for the other ranks parse the same command after rank 0 made it),
        and note the run dirs this run will create."""
        self.new_run_dirs: list[Path] = []
        if self.subcommand == "predict" and self.config.predict.resume is not None:
            self._check_resume(self.config.predict.resume)
            return
        if self.subcommand in WRITING_SUBCOMMANDS and rank_zero_only.rank == 0:
            check_new_log_dirs(self.trainer.loggers, self.config[self.subcommand].trainer.logger)
            loggers = [lg for lg in self.trainer.loggers if isinstance(lg, (TensorBoardLogger, CSVLogger))]
            self.new_run_dirs = [Path(lg.log_dir) for lg in loggers if not Path(lg.log_dir).exists()]

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
            discard_empty_run_dirs(self.new_run_dirs)
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
    """Parse `args` (default: the command line) and run the subcommand (run=False: parse and instantiate only)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)  # its INFO lines are noise here
    return ActivationCLI(
        ActivationModule,
        LightningDataModule,
        trainer_class=ActivationTrainer,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": False},
        # raise instead of printing usage and exiting, so that main() can say it in one line
        parser_kwargs={"exit_on_error": False, **{sub: {"exit_on_error": False} for sub in ActivationCLI.subcommands()}},
    )


SUBCOMMANDS = (*ActivationCLI.subcommands(), "report")


def check_command_line(args: list[str]) -> None:
    """What the parser would report without naming it: a subcommand that does not exist (its list
    lacks `report`, which is dispatched before it) and a config file that is not YAML."""
    if args and not args[0].startswith("-") and args[0] not in SUBCOMMANDS:
        raise ValueError(f"unknown subcommand {args[0]!r}; accepted: {', '.join(SUBCOMMANDS)}")
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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `lit-activation` console script and of `python -m lit_activation`.

    `argv` (default: the command line) lets tests call it. `report` reads finished runs only, so it
    is dispatched before LightningCLI (lit_activation/report/), under the same one-line errors.
    Returns None: the console-script wrapper calls sys.exit(main()), and any other value would
    be printed and turned into exit status 1.
    """
    debug = "--debug" in sys.argv or bool(os.environ.get(DEBUG_ENV))
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
        os.environ[DEBUG_ENV] = "1"  # processes launched for other ranks inherit it
    args = sys.argv[1:] if argv is None else [a for a in argv if a != "--debug"]
    debug = debug or (argv is not None and "--debug" in argv)
    try:
        check_command_line(args)
        if args[:1] == ["report"]:
            report.main(args[1:])
            return
        build_cli(None if argv is None else args)  # None: LightningCLI reads sys.argv, as before
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
