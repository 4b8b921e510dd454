"""Finding 1 as a Lightning callback: activated-parameter counts per layer and module, per dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lit_activation import loggers, outputs, plots
from lit_activation.analyses.counts import check_quantiles, dataset_summary, finish_bytes
from lit_activation.analyses.experts import RoutingCounts, expert_mass, expert_summary
from lit_activation.callbacks.base import Progress, ScoreCallback, log_results, model_name, run_dir
from lit_activation.distributed.sharding import replica_sum, shards
from lit_activation.engine.experts import RoutingRecord
from lit_activation.engine.reduce import ScoreSum
from lit_activation.engine.scores import ScoreTile
from lit_activation.models.experts import ExpertSlice, expert_of
from lit_activation.models.layers import layer_map, weight_shape
from lit_activation.planning.plan import Footprint, PlanContext

OUTPUTS = ("counts.json", "counts.csv", "counts.png")
EXPERT_OUTPUTS = ("experts.csv", "experts.png")  # a mixture of experts' per-expert table and figure


class ActivationCounts(ScoreCallback):
    """Per dataset, the mean of A per parameter; at the dataset's end, counts of mean A > γ.

    Datasets are scored one after another (each batch holds one dataset) through ONE accumulator:
    when a dataset's last batch is done its counts, histograms and quantile thresholds are computed
    and the state is zeroed for the next. Memory: parameters × 4 bytes, whatever the number of datasets.

    In a mixture of experts each dataset also gets a per-expert table (counts.json "experts",
    experts.csv, experts.png): routed tokens, token share and mean gate weight beside the activated
    parameters of every expert, "not routed" apart from "routed, not activated" (docs/moe.md).

    Args:
        gamma: threshold γ on the mean score (paper's text: 2e-5 for 32 layers, 5e-6 for 40; its
            code: 2e-6). γ depends on model scale, hence the quantile thresholds too.
        quantiles: the pooled mean-A distribution's quantiles at which counts are also reported.
        bins: bins of the per-layer log10(mean A) histogram (also sets the quantile resolution).
        state_device: `model` keeps the fp32 sums beside the weights (fast); `cpu` saves
            accelerator memory (parameters × 4 bytes) at the cost of one transfer of the
            batch-reduced sums per batch.
    """

    data_modes = ("single",)

    def __init__(
        self,
        gamma: float = 2e-5,
        quantiles: list[float] = [0.5, 0.9, 0.99],  # noqa: B006 - jsonargparse needs a literal
        bins: int = 100,
        state_device: Literal["model", "cpu"] = "model",
    ) -> None:
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if bins < 1:
            raise ValueError(f"bins must be >= 1, got {bins}")
        self.gamma, self.quantiles, self.bins, self.state_device = gamma, check_quantiles(quantiles), bins, state_device
        self.sums: ScoreSum  # the accumulator, made when predict starts
        self.results: dict | None = None

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """The sums: one fp32 value per scored parameter (a sharded rank's rows), beside the weights or
        in host RAM (`state_device: cpu`), where each dataset is also finished; a buffer of one tile's
        batch sums on the device."""
        on_host, largest = self.state_device == "cpu", plan.params.largest_scored
        return (
            Footprint()
            .add("scoring", "Finding 1 sums (fp32)", plan.row_state(), on_host)
            .add("scoring", "finishing a dataset", finish_bytes(largest), on_host)
            .add("scoring", "batch sums of one tile (fp32)", min(plan.tile_bytes, largest * 4))
        )

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.out = run_dir(trainer)  # a collective under DDP: resolve it on every rank, once
        self.progress = Progress(trainer, "counts")
        if trainer.is_global_zero:
            self.progress.discard_partial_results(OUTPUTS + EXPERT_OUTPUTS)
            outputs.check_new(self.out / f for f in OUTPUTS + EXPERT_OUTPUTS)
        self.names = trainer.datamodule.dataset_names
        self.layer_of, self.kind_of, self.n_layers = layer_map(pl_module.model)
        device = "cpu" if self.state_device == "cpu" else None
        self.sums = ScoreSum(pl_module.scored_modules, device=device, rows=pl_module.score_rows)
        self.routing = self._routing_counts(pl_module.scored_modules)
        self.finished: dict[str, dict] = {}
        for record in self.progress.load_json():  # a resumed run: the datasets finished before, in order
            expected = self.names[len(self.finished)] if len(self.finished) < len(self.names) else None
            if record["dataset"] != expected:
                raise ValueError(f"{self.progress.dir} holds dataset {record['dataset']!r} where this run's datasets {self.names} have {expected!r}")
            self.finished[record["dataset"]] = record["result"]

    def _routing_counts(self, units: dict) -> RoutingCounts | None:
        """The routing accumulator of a mixture of experts (None for a dense model), and each expert
        module's parameters per expert."""
        experts = {name: unit for name, unit in units.items() if isinstance(unit, ExpertSlice)}
        if not experts:
            return None
        self.expert_params: dict[str, int] = {}
        for name, unit in experts.items():
            found = expert_of(self.kind_of[name])  # (expert, module): an expert slice's kind always parses
            if found is not None:
                self.expert_params[found[1]] = weight_shape(unit).numel()
        layers = sorted({self.layer_of[n] for n in experts})
        return RoutingCounts(layers, max(u.expert for u in experts.values()) + 1)

    def resumed(self, batch: dict[str, torch.Tensor]) -> bool:
        return int(batch["dataset_index"][0]) < len(self.finished)

    def progress_summary(self) -> str:
        done, left = list(self.finished), self.names[len(self.finished) :]
        return f"{', '.join(done) or 'no dataset'} done; {', '.join(left) or 'no dataset'} left"

    def on_score_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor]) -> None:
        datasets = batch["dataset_index"].unique().tolist()
        if len(datasets) != 1:
            raise ValueError(f"ActivationCounts needs batches of one dataset each, got datasets {datasets} in one batch")
        self.finish_datasets_before(trainer, datasets[0])
        name = self.names[datasets[0]]
        self.sums.begin(batch["input_ids"].shape[0], f"dataset {name!r}", batch["group_index"].tolist())

    def on_score_tile(self, tile: ScoreTile) -> None:
        self.sums.update(tile)

    def on_score_routing(self, record: RoutingRecord) -> None:
        if self.routing is not None:
            self.routing.update(record)

    def on_score_batch_end(self, trainer: Trainer, pl_module: LightningModule, batch: dict[str, torch.Tensor], values: torch.Tensor) -> None:
        self.sums.end()  # NaN/inf in the batch's scores stops the run here, naming module and samples

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.finish_datasets_before(trainer, len(self.names))
        self.results = {
            "model": model_name(pl_module),
            "target": pl_module.engine.target,
            "gamma": self.gamma,
            "n_layers": self.n_layers,
            "layer_params": self.layer_params(pl_module),
            "datasets": self.finished,
        }
        if trainer.is_global_zero:
            self.write(trainer, pl_module)

    def finish_datasets_before(self, trainer: Trainer, dataset: int) -> None:
        """Finish every dataset before index `dataset` not yet finished, in order.

        A collective under DDP and sharding: every rank finishes every dataset in the same order,
        also one it had no batch of, so the all-reduces pair up. The sums are added over the ranks
        that scored other batches (replicas) once per dataset, never per batch (predict gives ranks
        uneven batch counts); a sharded run then combines its row shards' counts exactly (integer
        sums). Not torchmetrics: its sync gathers world_size copies of each parameter-sized state.
        """
        while len(self.finished) < dataset:
            sums = self.sums
            sums.samples = int(replica_sum(trainer, torch.tensor(sums.samples)))
            for state in sums.sums.values():
                reduced = replica_sum(trainer, state)
                if reduced is not state:
                    state.copy_(reduced)
            name = self.names[len(self.finished)]
            means = sums.means()
            summary = dataset_summary(means, self.layer_of, self.kind_of, self.n_layers, self.gamma, self.quantiles, self.bins, shards(trainer))
            if self.routing is not None:  # the ranks of a shard group route the same batches: summed over replicas only
                tokens, gate = replica_sum(trainer, self.routing.tokens.clone()), replica_sum(trainer, self.routing.gate.clone())
                experts = self.routing.tokens.shape[1]
                mass = shards(trainer).sum(expert_mass(means, self.layer_of, self.kind_of, self.routing.layers, experts))  # each rank: its rows
                summary["experts"] = expert_summary(summary["module_counts"], tokens, gate, self.routing.layers, self.expert_params, mass)
                self.routing.reset()
            self.finished[name] = {"n_samples": sums.samples, **summary}
            sums.reset()
            if trainer.is_global_zero:  # written the moment it is finished: a killed run resumes after it
                self.progress.save_json(f"{len(self.finished) - 1:04d}", {"dataset": name, "result": self.finished[name]})

    def layer_params(self, pl_module: LightningModule) -> list[int]:
        """Scored parameters per layer."""
        sizes = [0] * self.n_layers
        for name, module in pl_module.scored_modules.items():
            sizes[self.layer_of[name]] += weight_shape(module).numel()
        return sizes

    def write(self, trainer: Trainer, pl_module: LightningModule) -> None:
        out, res = self.out, self.results
        assert res is not None  # on_predict_epoch_end has set it
        outputs.write_json(out / "counts.json", res)
        rows = [
            (name, layer, kind, d["module_counts"][kind][layer], d["layer_counts"][layer])
            for name, d in res["datasets"].items()
            for layer in range(res["n_layers"])
            for kind in d["module_counts"]
        ]
        outputs.write_csv(out / "counts.csv", ["dataset", "layer", "module", "module_count", "layer_count"], rows)
        fig = plots.counts_figure({n: d["layer_counts"] for n, d in res["datasets"].items()}, self.gamma, res["model"])
        outputs.save_figure(out / "counts.png", fig)
        figures = {"counts": fig}
        if self.routing is not None:
            figures["experts"] = self._write_experts(out, res)
        log_results(trainer, per_layer={f"counts/{name}": d["layer_counts"] for name, d in res["datasets"].items()}, figures=figures)
        for name, d in res["datasets"].items():  # each dataset's log10(mean A) histogram per layer
            hist = d["log10_histogram"]
            loggers.log_histograms(trainer.loggers, f"log10_mean_A/{name}", hist["lo"], hist["hi"], hist["counts"])
        for figure in figures.values():
            plots.close(figure)
        self.progress.clear()
        boards = [Path(lg.log_dir).parent for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        board = f"; TensorBoard: tensorboard --logdir {boards[0]}" if boards else ""
        also = ", experts.csv, experts.png" if self.routing is not None else ""
        print(f"Finding 1 counts: {out / 'counts.png'}, counts.json, counts.csv{also}{board}")

    @staticmethod
    def _write_experts(out, res: dict):  # noqa: ANN001, ANN205 - a Path; a Figure
        """experts.csv (a row per dataset, layer and expert) and the routing / activation maps."""
        rows: list[tuple] = []
        token_share: dict[int, list] = {}
        activated_share: dict[int, list] = {}
        names = list(res["datasets"])
        for name, d in res["datasets"].items():
            for layer, t in d["experts"]["per_layer"].items():
                token_share.setdefault(int(layer), []).append(t["token_share"])
                activated_share.setdefault(int(layer), []).append(t["activated_share"])
                for e, state in enumerate(t["state"]):
                    rows.append((
                        name, layer, e, t["routed_tokens"][e], t["token_share"][e], t["mean_gate_weight"][e], t["activated_total"][e],
                        t["activated_share"][e], t["activated_per_routed_token"][e], state,
                    ))
        header = ["dataset", "layer", "expert", "routed_tokens", "token_share", "mean_gate_weight", "activated", "activated_share",
                  "activated_per_routed_token", "state"]
        outputs.write_csv(out / "experts.csv", header, rows)
        fig = plots.experts_figure(token_share, activated_share, names, res["model"])
        outputs.save_figure(out / "experts.png", fig)
        return fig
