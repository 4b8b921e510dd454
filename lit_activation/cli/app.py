"""`lit-activation`: one LightningCLI over ActivationModule, the data modules and the analyses.

    lit-activation predict  --config configs/counts_embedded.yaml   # scores: counts, LLMDcos, STS
    lit-activation validate --config configs/prune_embedded.yaml    # pruning + perplexity (+ zero-shot)
    lit-activation compare  --config configs/compare_embedded.yaml  # allocations × metrics × sparsities × seeds
    lit-activation plan     --config configs/counts.yaml            # predicted memory, nothing loaded
    lit-activation report   RUN_DIR [RUN_DIR ...]                   # findings report from finished runs

`lit-activation --help` lists them, `<subcommand> --help` a subcommand's options (this project's
first, Lightning's that apply after; the rest still parse, as saved configs name them).

The console entry point, `main` (command.py), answers `--help`, `--version` and `report` without
this module, and hands a subcommand to `build_cli`. A mistake in the input prints one line,
`error: <message>` (with the closest option or class when one was mistyped), and exits with status 2
before any work; `--debug` (or LIT_ACTIVATION_DEBUG=1) shows the traceback instead. A run prints one
line per phase on stderr, and where its results are as its last line; `--verbose` (or
LIT_ACTIVATION_VERBOSE=1) shows all that Lightning and the libraries print, `--quiet` (or
LIT_ACTIVATION_QUIET=1) only warnings and errors, and no progress bar.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_activation import outputs
from lit_activation.callbacks.pruning import Pruning
from lit_activation.callbacks.status import RunStatus
from lit_activation.callbacks.zeroshot import ZeroShotEval
from lit_activation.cli.command import QUIET_ENV, SUBCOMMAND_HELP
from lit_activation.cli.console import interactive
from lit_activation.cli.errors import suggestion
from lit_activation.cli.help import EPILOG, ActivationArgumentParser, HelpFormatter, help_sections
from lit_activation.cli.run_dirs import IdNamedRuns, analyses_only, check_new_log_dirs, discard_empty_run_dirs, missing_parents
from lit_activation.data import datamodule, perplexity  # noqa: F401 - the data modules --data accepts by name, listed in --help
from lit_activation.models.architectures import check_prunable, check_scorable, model_config, published_config
from lit_activation.models.loading import check_source
from lit_activation.module import ActivationModule
from lit_activation.pruning.experts.layout import MoEShape, check_removal
from lit_activation.resume import check_progress, check_same_results, find_run, saved_config
from lit_activation.trainer import ActivationTrainer

log = logging.getLogger(__name__)


# Subcommands that prune and evaluate: they get the fixed `pruning` and `zeroshot` groups.
PRUNING_SUBCOMMANDS = ("validate", "compare", "plan")


# Subcommands that write their results to the logger's version dir (compare writes to its output_dir, plan nothing).
WRITING_SUBCOMMANDS = ("predict", "validate")


class ActivationCLI(LightningCLI):
    """LightningCLI with the defaults every analysis needs (gradients on, TensorBoard run dirs).

    Subcommands: predict (scores), validate (pruning, perplexity), compare (a pruning sweep), plan
    (memory). Nothing is trained, so fit and test are not offered. Pruning and zero-shot are fixed
    option groups (`--pruning.sparsity`, `--pruning.allocation.init_args.alpha`,
    `--zeroshot.tasks`), so an override never depends on the order of a callback list.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # LightningCLI's arguments
        words = sys.argv[1:] if kwargs.get("args") is None else kwargs["args"]
        # the subcommand the command line names, whose parser alone is built (None: every one)
        self.requested = words[0] if isinstance(words, list) and words and words[0] in self.subcommands() else None
        super().__init__(*args, **kwargs)

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

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Lightning's subcommands, of which only the one the command line names is built: building a
        subcommand's parser reads every class signature it offers (about a second each); all of them
        when the command line names none."""
        if self.requested is None:
            super()._add_subcommands(parser, **kwargs)
            return
        sub = self.requested
        self._subcommand_parsers = {sub: self._prepare_subcommand_parser(self.trainer_class, sub, **kwargs.get(sub, {}))}
        parser.add_subcommands().add_subcommand(sub, self._subcommand_parsers[sub], help=SUBCOMMAND_HELP[sub])

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
            parser.first_sentence_of = ("model.engine.", "pruning.expert_inputs.", "pruning.allocation", "pruning.metric", "pruning.nm")
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
        self.id_named: IdNamedRuns | None = None
        self._check_model()
        if self.subcommand == "predict" and self.config.predict.resume is not None:
            self._check_resume(self.config.predict.resume)
            return
        if self.subcommand in WRITING_SUBCOMMANDS and rank_zero_only.rank == 0:
            check_new_log_dirs(self.trainer.loggers, self.config[self.subcommand].trainer.logger)
            loggers = [lg for lg in self.trainer.loggers if isinstance(lg, (TensorBoardLogger, CSVLogger))]
            self.new_run_dirs = [Path(lg.log_dir) for lg in loggers if not Path(lg.log_dir).exists()]
            self.id_named = IdNamedRuns.of(self.trainer.loggers, self.trainer.default_root_dir) if not loggers else None
            for run in self.new_run_dirs:  # a file in the way, no permission, a full disk: said now, not at the first write
                outputs.check_can_create(run, "log dir", "choose another --trainer.logger.init_args.save_dir")
            parents = {p for run in self.new_run_dirs for p in missing_parents(run)}
            if self.id_named is not None:  # a W&B run's dir: save_dir/project/<run id>, named once the run starts
                parents |= set(missing_parents(self.id_named.parent / "run"))
            self.new_parent_dirs = sorted(parents, key=lambda p: len(p.parts), reverse=True)  # deepest first

    def _check_model(self) -> None:
        """The model can be found (a path that exists, a hub id that can be read), its weights can be
        scored, and whole experts are removed only from a mixture of experts; or one line says why.
        `plan` reads only a config, which the published ones give offline."""
        hp = self.model.hparams
        if not (self.subcommand == "plan" and published_config(hp.model) is not None):
            check_source(hp.model, weights=self.subcommand != "plan")
        try:
            config = model_config(hp.model, hp.trust_remote_code)
        except (ValueError, OSError):  # a config that cannot be read here (offline): the run's own checks say why, where it is read
            return
        check_scorable(config, hp.model, hp.trust_remote_code)
        pruning = self.config[self.subcommand].get("pruning") if self.subcommand in ("validate", "compare") else None
        if pruning is not None:
            check_prunable(config, hp.model, hp.trust_remote_code, (pruning.get("experts.ratio") or 0) > 0)
            for callback in self.trainer.callbacks:  # the experts' ratio against the routing, before the data are read (its score's file: at setup)
                if isinstance(callback, Pruning) and callback.experts.removes and (shape := MoEShape.of_config(config, hp.trust_remote_code)):
                    check_removal(callback.experts.ratio, shape, hp.model)

    def _check_resume(self, resume: str) -> None:
        """Before any model loads: the run to resume exists, is unfinished, and was configured as
        this one in all that changes results; its config.yaml is kept as it is."""
        run = find_run(resume, self.trainer.logger_dir())
        parser = self._parser(self.subcommand)
        current = yaml.safe_load(parser.dump(self.config[self.subcommand], skip_none=False))
        check_same_results(run, analyses_only(saved_config(run, resume)), analyses_only(current))
        check_progress(run)
        for callback in self.trainer.callbacks:
            if isinstance(callback, SaveConfigCallback):
                callback.already_saved = True  # the interrupted run's config.yaml stays

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; if it fails, the run dirs it created that hold no result are removed."""
        try:
            super()._run_subcommand(subcommand)
        except Exception:
            id_named = self.id_named.new() if self.id_named is not None else []
            discard_empty_run_dirs(self.new_run_dirs + id_named, self.new_parent_dirs)
            raise
        self._say_where_results_are(subcommand)

    def _say_where_results_are(self, subcommand: str) -> None:
        """The run's last line (stderr, rank 0): `results in RUN_DIR` (compare: its output dir)."""
        if not self.trainer.is_global_zero:
            return
        if subcommand == "compare":
            where = self.config.compare.output_dir
        else:
            status = next((cb for cb in self.trainer.callbacks if isinstance(cb, RunStatus)), None)
            where = status.run_dir if status is not None else None
        if where is not None:
            log.info("results in %s", where)

    def instantiate_trainer(self, **kwargs) -> ActivationTrainer:  # noqa: ANN003 - Lightning's trainer options
        """Lightning's trainer, with RunStatus (what a run says while it runs) among its callbacks."""
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(RunStatus())
        return trainer

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - LightningArgumentParser
        # The data are tokenized for the model being analysed, with its trust setting, always.
        parser.link_arguments("model.model", "data.init_args.tokenizer")
        parser.link_arguments("model.trust_remote_code", "data.init_args.trust_remote_code")
        parser.set_defaults(
            {
                # Taylor scores are gradients: predict must not run under torch.inference_mode.
                "trainer.inference_mode": False,
                # progress where a person watches, as usual: not in a log file, nor under --quiet
                "trainer.enable_progress_bar": interactive() and not os.environ.get(QUIET_ENV),
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "runs", "name": "lit_activation"},
                },
            }
        )


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

