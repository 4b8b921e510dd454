"""What every within-layer pruning method is: a class with its own options (docs/method.md §5).

Most methods are metrics: they score each weight of a block's linear modules, and in every output
row the lowest-scored ⌊in · s_l⌋ weights are pruned (or n of every m for N:M). A method that
reconstructs (SparseGPT) reads another statistic of the inputs (`input_statistics`: H = 2XXᵀ
instead of ‖X‖) and prunes each module itself (`prune`), updating the weights it keeps. A new
method is one subclass in one file of this package, selected in YAML by `class_path`:

    pruning:
      metric:
        class_path: lit_activation.pruning.metrics.Taylor
        init_args: {target: max_logit}
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from lit_activation.engine import RowRanges
from lit_activation.planning.plan import Footprint, PlanContext
from lit_activation.pruning.context import Calibration, PruningContext
from lit_activation.pruning.expert_inputs import ExpertInputs
from lit_activation.pruning.masks import prune_module
from lit_activation.pruning.sequential import BlockInputs, input_norms


class PruningMetric:
    """Which weights of a block's linears are pruned: per weight, how much it matters (`scores`: the
    higher, the longer it is kept), or the method's own `prune` of a module."""

    def prepare(self, context: PruningContext) -> None:
        """Work on the dense model before any block is pruned (default: nothing)."""

    def enter_block(self, index: int, context: PruningContext) -> None:
        """Work when sequential pruning reaches block `index`, its predecessors pruned (default: nothing)."""

    # Whether the method prunes inside a mixture of experts' experts, from each expert's own inputs
    # (pruning/expert_inputs.py). A method that scores with a dense model's gradients does not yet.
    prunes_experts: bool = True

    def input_statistics(
        self, block: nn.Module, inputs: BlockInputs, experts: ExpertInputs | None = None, tokens: dict[str, int] | None = None,
    ) -> dict[str, Tensor]:
        """What the method reads of each unit's calibration inputs in `block`, by the unit's name inside
        the block (default: ‖X_k‖₂ per input channel over every token; an expert's over its tokens, by
        `experts`, each expert's routed tokens counted into `tokens`)."""
        return input_norms(block, inputs, experts, tokens)

    def prune(self, name: str, module: nn.Module, statistic: Tensor, sparsity: float, n: int, m: int, context: PruningContext) -> float:
        """Prune one linear in place; returns the fraction of its weights pruned. Default: mask the
        lowest `scores` of every output row (or n of every m inputs), as Wanda does."""
        return prune_module(module, lambda weight: self.scores(name, module, weight, statistic), sparsity, n, m)

    def scores(self, name: str, module: nn.Module, weight: Tensor, input_norm: Tensor) -> Tensor:
        """Scores of `weight`, the module's weight as (out, in), fp32 of the same shape (a metric
        defines them; a method that overrides `prune` need not).

        name: the module's full name; input_norm: ‖X_k‖₂ per input channel over every calibration
        token (the block's inputs as pruning reached it).
        """
        raise NotImplementedError(f"{type(self).__name__} defines neither scores nor its own prune")

    def memory_needs(self, plan: PlanContext, calibration: Calibration) -> Footprint:
        """What the metric adds to memory besides pruning's own (the plan): nothing for Wanda."""
        return Footprint()

    @property
    def label(self) -> str:
        """Short name in records and tables: the class name, lower case."""
        return type(self).__name__.lower()

    def describe(self) -> dict:
        """JSON-ready record of the metric and its options."""
        return {"metric": self.label, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}


def state_rows(context: PruningContext, modules: Mapping[str, nn.Module]) -> RowRanges:
    """The rows of `modules` whose per-parameter state a sharded rank keeps (context.rows: its own).

    A Linear is pruned on the rank's own rows (masks.prune_module), so its state holds those rows
    only: 1/N of it per rank. A Conv1D (GPT-2) stores (in, out) and is pruned on its gathered
    weight, so every rank scores all of its rows: its state is whole on every rank, which costs
    compute but no collective. Unsharded: {} (every row).
    """
    return {name: span for name, span in context.rows.items() if name in modules and not isinstance(modules[name], Conv1D)}
