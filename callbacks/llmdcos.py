"""Findings 2-3 as a Lightning callback: LLMDcos box plots per layer and the dataset × dataset matrix."""

from __future__ import annotations

import itertools

import torch
from lightning.pytorch import LightningModule, Trainer

from lit_activation import outputs, plots
from lit_activation.analyses.similarity import matrix_layers, pair_cosines, similarity_matrix
from lit_activation.callbacks.base import log_results, model_name
from lit_activation.callbacks.groups import GroupGramCallback


class LLMDcos(GroupGramCallback):
    """Per dataset pair and layer, LLMDcos of every sample pair (data mode `pairs`).

    Pair i of (X, Y) is X's i-th sample with Y's i-th; of (X, X), two different samples. Every pair
    of the configured datasets, each with itself included, comes from one scoring of each sample.

    Args:
        box_pairs: dataset pairs drawn as box plots (paper Fig. 3), e.g. [[boolq, humaneval]];
            None draws every pair when there are at most 6, else only same-dataset pairs.
        matrix_layers: 0-indexed inclusive [first, last] layers averaged for the matrix (Fig. 6);
            None: the paper's code, L//2 … L−3.
    """

    data_modes = ("pairs",)
    outputs = ("llmdcos.json", "llmdcos.csv", "llmdcos_box.png", "similarity_matrix.csv", "similarity_matrix.png")

    def __init__(self, box_pairs: list[list[str]] | None = None, matrix_layers: list[int] | None = None) -> None:
        self.box_pairs, self.matrix_layers = box_pairs, matrix_layers
        self.results: dict | None = None  # once the run has finished: what llmdcos.json holds

    def check_layers(self, n_layers: int) -> None:
        matrix_layers(n_layers, self.matrix_layers)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._box_pairs(trainer.datamodule.dataset_names)  # a typo fails before the weights load, not after scoring

    def _box_pairs(self, names: list[str]) -> list[tuple[str, str]]:
        if self.box_pairs is not None:
            for pair in self.box_pairs:
                if len(pair) != 2 or not set(pair) <= set(names):
                    raise ValueError(f"box_pairs entry {pair} must be two of the run's datasets {names}")
            return [(p[0], p[1]) for p in self.box_pairs]
        every = list(itertools.combinations_with_replacement(names, 2))
        return every if len(every) <= 6 else [(n, n) for n in names]

    def report(self, trainer: Trainer, pl_module: LightningModule, cos: torch.Tensor) -> None:
        names = trainer.datamodule.dataset_names
        n_layers = cos.shape[1]
        layers = matrix_layers(n_layers, self.matrix_layers)
        index = {n: i for i, n in enumerate(names)}

        def key(x: str, y: str) -> str:  # pairs are stored once, in dataset order
            return f"{x}-{y}" if index[x] <= index[y] else f"{y}-{x}"

        per_pair = {key(x, y): pair_cosines(cos, index[x], index[y]).tolist() for x, y in itertools.combinations_with_replacement(names, 2)}
        matrix = similarity_matrix(cos, len(names), layers)
        model = model_name(pl_module)
        self.results = {
            "model": model, "datasets": names, "n_pairs": cos.shape[0], "n_layers": n_layers,
            "matrix_layers": [layers[0], layers[-1]], "matrix": matrix.tolist(),
            "llmdcos": per_pair,  # "X-Y": pairs × layers, every value kept for re-plotting
        }
        outputs.write_json(self.out / "llmdcos.json", self.results)
        outputs.write_csv(
            self.out / "llmdcos.csv", ["pair", "sample", "layer", "llmdcos"],
            ((p, i, layer, v) for p, rows in per_pair.items() for i, row in enumerate(rows) for layer, v in enumerate(row)),
        )
        outputs.write_csv(self.out / "similarity_matrix.csv", ["dataset", *names], ([n, *row] for n, row in zip(names, matrix.tolist(), strict=True)))
        box = plots.box_figure({f"{x} vs {y}": per_pair[key(x, y)] for x, y in self._box_pairs(names)}, model)
        heat = plots.heatmap_figure(matrix.tolist(), f"{model}: mean LLMDcos, layers {layers[0]}-{layers[-1]}", labels=names)
        outputs.save_figure(self.out / "llmdcos_box.png", box)
        outputs.save_figure(self.out / "similarity_matrix.png", heat)
        log_results(
            trainer, per_layer={f"llmdcos_mean/{pair}": torch.tensor(rows).mean(0).tolist() for pair, rows in per_pair.items()},
            figures={"llmdcos_box": box, "similarity_matrix": heat},
        )
        plots.close(box)
        plots.close(heat)
        print(f"LLMDcos: {self.out / 'llmdcos_box.png'}, {self.out / 'similarity_matrix.png'}, llmdcos.json/csv")
