"""`lit-activation` command: LightningCLI over ActivationModule and the data modules.

    lit-activation predict  --config configs/counts_embedded.yaml   # scores: counts, LLMDcos, STS
    lit-activation validate --config configs/prune_embedded.yaml    # pruning + perplexity
    lit-activation plan     --config configs/counts.yaml            # predicted memory, nothing loaded
"""

from __future__ import annotations

import logging

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from lit_activation.module import ActivationModule
from lit_activation.trainer import ActivationTrainer


class ActivationCLI(LightningCLI):
    """LightningCLI with the defaults every analysis needs (gradients on, TensorBoard run dirs).

    Subcommands: predict (scores), validate (pruning, perplexity), plan (memory). Nothing is
    trained, so fit and test are not offered.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {
            "predict": {"model", "dataloaders", "datamodule"},
            "validate": {"model", "dataloaders", "datamodule"},
            "plan": {"model", "datamodule"},
        }

    def add_arguments_to_parser(self, parser) -> None:
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
    )


def main() -> None:
    """Entry point of the `lit-activation` console script and of `python -m lit_activation`.

    Returns None: the console-script wrapper calls sys.exit(main()), and any other value would
    be printed and turned into exit status 1.
    """
    build_cli()


if __name__ == "__main__":
    main()
