"""`lit-activation` command: LightningCLI over ActivationModule and the data modules.

    lit-activation predict  --config configs/counts_embedded.yaml   # scores: counts, LLMDcos, STS
    lit-activation validate --config configs/prune_embedded.yaml    # pruning + perplexity
"""

from __future__ import annotations

import logging

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI

from lit_activation.module import ActivationModule


class ActivationCLI(LightningCLI):
    """LightningCLI with the defaults every analysis needs (gradients on, TensorBoard run dirs)."""

    def add_arguments_to_parser(self, parser) -> None:
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


def main(args: list[str] | None = None, run: bool = True) -> ActivationCLI:
    """Entry point of the console script and of `python -m lit_activation` (run=False: parse only)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)  # its INFO lines are noise here
    return ActivationCLI(
        ActivationModule,
        LightningDataModule,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": False},
    )


if __name__ == "__main__":
    main()
