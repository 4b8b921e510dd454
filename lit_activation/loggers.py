"""A run's results in any Lightning logger, and the directory that holds its files.

Scalars go through every logger's own `log_metrics`. Figures and histograms go where each logger can
hold them: TensorBoard (`add_figure`, `add_histogram_raw`), Weights & Biases (`log_image`,
`wandb.Histogram`), MLflow (`log_figure`, the histograms as JSON artifacts), CSV (scalars only; its
figures as PNG files in its own directory). Any other logger gets the scalars. Several loggers at
once each get what they can hold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from lit_activation import outputs

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DIRECTORY_LOGGERS = (TensorBoardLogger, CSVLogger)  # loggers whose log_dir is a versioned run dir of their own


def run_dir_of(loggers: Sequence[Logger], default_root_dir: str | Path) -> Path:
    """Where a run's files go: the first TensorBoard or CSV logger's version dir (runs/NAME/version_N),
    which is also what `--resume` reads; without one, the first logger's `save_dir/name/version`, as
    Lightning places checkpoints (W&B: save_dir/project/run id; MLflow: the local store's run dir),
    under `default_root_dir` when the logger keeps no local files; without loggers, `default_root_dir`.

    A W&B or MLflow run is started here if it was not yet (its id names the dir). Not a collective:
    under DDP, rank 0's answer is the one to use (`callbacks.base.run_dir` broadcasts it).
    """
    for logger in loggers:
        if isinstance(logger, DIRECTORY_LOGGERS):
            return Path(logger.log_dir)
    if not loggers:
        return Path(default_root_dir)
    first = loggers[0]
    _ = first.experiment  # W&B and MLflow name their run once it exists; a dummy on ranks other than 0
    version = first.version
    return Path(first.save_dir or default_root_dir) / str(first.name) / (version if isinstance(version, str) else f"version_{version}")


def log_scalars(loggers: Sequence[Logger], scalars: Mapping[str, float], step: int | None = None) -> None:
    """Scalars through every logger's log_metrics (`step`: the layer, for a per-layer series)."""
    if scalars:
        for logger in loggers:
            logger.log_metrics(dict(scalars), step=step)


def log_figures(loggers: Sequence[Logger], figures: Mapping[str, Figure], run_dir: Path) -> None:
    """Each figure (tag -> matplotlib Figure, left open) in every logger that holds figures; a CSV
    logger's as `<tag>.png` in its own directory, unless that is the run dir (which has them already)."""
    if not figures:
        return
    for logger in loggers:
        for tag, figure in figures.items():
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(tag, figure, close=False)
            elif isinstance(logger, WandbLogger):
                logger.log_image(key=tag, images=[figure])
            elif isinstance(logger, MLFlowLogger):
                logger.experiment.log_figure(logger.run_id, figure, f"{tag}.png")
            elif isinstance(logger, CSVLogger) and Path(logger.log_dir).resolve() != run_dir.resolve():
                outputs.save_figure(Path(logger.log_dir) / f"{tag}.png", figure)
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.flush()


def bin_edges(lo: float, hi: float, bins: int) -> list[float]:
    """The bins+1 edges of `bins` equal bins from lo to hi."""
    return [lo + b * (hi - lo) / bins for b in range(bins + 1)]


def log_histograms(loggers: Sequence[Logger], tag: str, lo: float, hi: float, layer_counts: Sequence[Sequence[int]]) -> None:
    """One histogram per layer (step = layer) of equal bins from lo to hi (`layer_counts`: layers × bins),
    in every logger that holds histograms: TensorBoard's, W&B's, and MLflow's as one JSON artifact
    `<tag>.json`. A layer with no values is left out (TensorBoard refuses an empty histogram)."""
    bins = len(layer_counts[0]) if layer_counts else 0
    edges = bin_edges(lo, hi, bins)
    centres = [(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)]
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            record = {"lo": lo, "hi": hi, "bin_edges": edges, "layer_counts": [list(c) for c in layer_counts]}
            logger.experiment.log_dict(logger.run_id, record, f"{tag}.json")
            continue
        for layer, counts in enumerate(layer_counts):
            if sum(counts) == 0:
                continue
            if isinstance(logger, TensorBoardLogger):
                # step = layer: TensorBoard's histogram view then reads as a stack over depth. The sums use
                # the bins' centres: the values themselves are not kept.
                logger.experiment.add_histogram_raw(
                    tag, min=lo, max=hi, num=sum(counts), sum=sum(c * x for c, x in zip(counts, centres, strict=True)),
                    sum_squares=sum(c * x * x for c, x in zip(counts, centres, strict=True)), bucket_limits=edges[1:],
                    bucket_counts=list(counts), global_step=layer,
                )
            elif isinstance(logger, WandbLogger):
                import wandb  # installed with WandbLogger in use

                logger.log_metrics({tag: wandb.Histogram(np_histogram=(list(counts), edges))}, step=layer)
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.flush()
