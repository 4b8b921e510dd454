"""LightningDataModule that samples, tokenizes and pads the inputs whose activations are scored.

Every item is a *group* of rows that must stay in one batch on one rank:
- mode `single`: one row, one sample of one dataset (Finding 1 counts).
- mode `pairs`: for each dataset two independent samples, rows [X_a, X_b, Y_a, Y_b, ...]; pair i of
  (X, Y) is X_a[i] with Y_a[i], and of (X, X) is X_a[i] with X_b[i] (docs/method.md §3). Every sample is
  scored once however many dataset pairs it takes part in.
- mode `sts`: the two sentences of one STS pair, with the gold score.
- mode `set`: ONE group holding every text of one set (all-pairs similarity), optionally with human
  ratings over them. The N texts are one forward/backward batch, so N is bounded by the device:
  each text is scored once and scores are never stored, so a pair can only be compared when both
  texts share the batch (blocks of texts would give no Gram across blocks). Beyond the limit:
  fewer or shorter texts (max_length), model.engine.checkpoint_blocks, a larger device; sharding
  (ModelParallelStrategy) splits the weights, not the batch, and data parallelism cannot help one group.

A dataset is a registered name, or texts given in memory (`texts`: name -> list of strings), each text
one input, sampled as a registered prompt set's records are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from lit_activation.data.embedded import RATED_SETS
from lit_activation.data.registry import check_files, get_spec
from lit_activation.data.samples import RatedPairs, choose, rated_pairs, read_similarity, sample_inputs, sample_sts_texts, set_texts, tokenize
from lit_activation.models.loading import EMBEDDED_DEFAULT, load_tokenizer
from lit_activation.planning.plan import Footprint, PlanContext, ScoringPass

Mode = Literal["single", "pairs", "sts", "set"]


@dataclass(frozen=True)
class Group:
    """Rows scored together: token ids per row, dataset index per row, optional gold score, and
    the rows' texts where the lexical baseline needs them (modes `sts` and `set`)."""

    index: int
    rows: list[list[int]]
    datasets: list[int]
    gold: float = float("nan")
    texts: list[str] = field(default_factory=list)


def pad_groups(groups: Sequence[Group], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Collate groups into one padded batch; rows keep their group order."""
    rows = [row for g in groups for row in g.rows]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(row)
        mask[i, span] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "group_index": torch.tensor([g.index for g in groups]),
        "dataset_index": torch.tensor([d for g in groups for d in g.datasets]),
        "gold": torch.tensor([g.gold for g in groups], dtype=torch.float64),
    }


def batches(groups: Sequence[Group], batch_size: int, by_dataset: bool) -> list[list[Group]]:
    """Consecutive groups, batch_size at a time; with `by_dataset`, a batch never mixes datasets.

    Batches are formed once, before any sampler sees them: a distributed sampler then deals out
    whole batches, so each batch (its rows, padding and scores) is the same on 1 or N processes.
    """
    out: list[list[Group]] = []
    for g in groups:
        fits = out and len(out[-1]) < batch_size and (not by_dataset or out[-1][-1].datasets[0] == g.datasets[0])
        if fits:
            out[-1].append(g)
        else:
            out.append([g])
    return out


def _collate_batch(items: list[list[Group]], pad_id: int, side: str) -> dict[str, torch.Tensor]:
    (groups,) = items  # the loader's batch size is 1: each item is a pre-formed batch
    return pad_groups(groups, pad_id, side)


def tokenizer_name(explicit: str | None, datamodule: LightningDataModule) -> str:
    """The model whose tokenizer a data module uses: its own setting, else the LightningModule's model."""
    if explicit is not None:
        return explicit
    module = datamodule.trainer.lightning_module if datamodule.trainer is not None else None
    return module.hparams.model if module is not None else EMBEDDED_DEFAULT


def check_texts(texts: dict[str, list[str]], datasets: Sequence[str], mode: str, data_files: dict | None, num_samples: int) -> None:
    """Texts given in memory are named in `datasets`, have no file too, are non-empty strings, and are
    enough for the samples drawn (pairs: two per pair); one line naming the first that is not."""
    if texts and mode == "sts":
        raise ValueError("texts (datasets in memory) take modes single, pairs or set; mode 'sts' reads sentence pairs with gold scores from an STS set")
    for name, given in texts.items():
        if name not in datasets:
            raise ValueError(f"texts names {name!r}, which datasets {list(datasets)} does not list; add it there (its place sets the order)")
        if name in (data_files or {}):
            raise ValueError(f"{name!r} is given both as texts and as data_files; give one")
        if isinstance(given, str) or not given:
            raise ValueError(f"texts {name!r} must be a non-empty list of strings, got {given!r:.60}")
        for i, text in enumerate(given):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"texts {name!r} item {i} is {text!r:.60}; every text is a non-empty string")
        drawn = {"single": num_samples, "pairs": 2 * num_samples}.get(mode, 0)
        if drawn > len(given):
            raise ValueError(f"texts {name!r} has {len(given)} texts; mode {mode!r} with num_samples {num_samples} draws {drawn} distinct ones")


class ActivationDataModule(LightningDataModule):
    """Seeded samples of registered datasets, as padded batches of groups.

    Args:
        datasets: registered dataset names (see `lit_activation.data.registry.REGISTRY`) or names of
            `texts`; mode `set` also takes a shipped rated set (`lit_activation.data.embedded.RATED_SETS`: lee).
        tokenizer: model name or path whose tokenizer is used; None takes the LightningModule's `model`.
        mode: `single`, `pairs`, `sts` or `set` (see the module docstring).
        num_samples: samples per dataset (pairs per dataset pair in `pairs`/`sts`); paper: 64.
            Unused in mode `set`, which takes every text of its set.
        max_length: prompts longer than this keep their last tokens (warned); bounds memory.
        window: token length of the random windows taken from corpora (paper: 256).
        batch_size: groups per batch; one batch costs one forward/backward of batch_size × rows.
            In mode `single` a batch holds one dataset (the last of each may be smaller); mode
            `set` is one group, so 1.
        seed: fixes which samples are drawn.
        data_files: dataset name -> local file(s) in the benchmark's field layout (offline use).
        padding_side: `right` or `left`; scores do not depend on it.
        trust_remote_code: passed to the tokenizer (the CLI links it to the model's setting).
        similarity: mode `set` only: human ratings of the set's texts (row i = text i in file
            order), a `.json` {"matrix": N × N} or {"pairs": [[i, j, score], ...]}, a `.npy` or a
            `.txt` N × N matrix; checked against the texts before the model loads.
        texts: datasets given in memory, name -> texts (no file, no registry entry): each text is one
            input, cut to its last max_length tokens; modes `single`, `pairs` and `set`. Name them
            in `datasets`, which sets their order.
    """

    def __init__(
        self,
        datasets: list[str] = ["humaneval"],  # noqa: B006 - jsonargparse needs a literal default
        tokenizer: str | None = None,
        mode: Mode = "single",
        num_samples: int = 64,
        max_length: int = 256,
        window: int = 256,
        batch_size: int = 8,
        seed: int = 0,
        data_files: dict[str, str | list[str]] | None = None,
        padding_side: Literal["left", "right"] = "right",
        trust_remote_code: bool = False,
        similarity: str | None = None,
        texts: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__()
        if not datasets:
            raise ValueError("datasets is empty; give at least one registered dataset name")
        check_texts(texts or {}, datasets, mode, data_files, num_samples)
        for name in datasets:
            if not (mode == "set" and name in RATED_SETS) and name not in (texts or {}):
                get_spec(name)  # fail early on unknown names
        if len(set(datasets)) != len(datasets):
            raise ValueError(f"datasets lists a name twice: {datasets}")
        if mode == "sts" and len(datasets) != 1:
            raise ValueError(f"mode 'sts' takes exactly one STS dataset, got {datasets}")
        if mode == "set" and len(datasets) != 1:
            raise ValueError(f"mode 'set' takes exactly one set of texts, got {datasets}")
        if similarity is not None and mode != "set":
            raise ValueError(f"similarity (human ratings of a set's texts) needs mode 'set', got mode {mode!r}")
        if similarity is not None and datasets[0] in RATED_SETS:
            raise ValueError(f"{datasets[0]!r} ships its own human ratings; similarity is for other sets")
        if mode == "set" and batch_size != 1:
            raise ValueError(f"mode 'set' scores its texts as one group, one batch: set batch_size 1, got {batch_size}")
        for name in data_files or {}:
            get_spec(name)  # a typo in a data_files key would otherwise silently fall back to the hub
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for option, value, least in (("num_samples", num_samples, 1), ("max_length", max_length, 2), ("window", window, 2)):
            if value < least:
                raise ValueError(f"{option} must be >= {least}, got {value}")
        self.save_hyperparameters(ignore=["texts"])  # the texts themselves are no hyperparameter to log
        self.texts = {name: list(given) for name, given in (texts or {}).items()}
        self.dataset_names = list(datasets)
        self.groups: list[Group] = []
        self.ratings: RatedPairs | None = None  # mode `set`: human-rated pairs (i, j, score) of texts

    @property
    def group_size(self) -> int:
        """Rows per group: 1 (single), 2 per dataset (pairs), 2 (sts), N texts (set; before setup,
        when N is not known yet, num_samples stands in)."""
        if self.hparams.mode == "set":
            return len(self.groups[0].rows) if self.groups else self.hparams.num_samples
        return {"single": 1, "pairs": 2 * len(self.dataset_names), "sts": 2}[self.hparams.mode]

    @property
    def n_groups(self) -> int:
        """Groups to score: the loaded count once set up; before, one per sample of each dataset
        (single), one per sample pair (pairs, sts), one for the whole set (set)."""
        if self.groups:
            return len(self.groups)
        hp = self.hparams
        return {"single": len(self.dataset_names) * hp.num_samples, "set": 1}.get(hp.mode, hp.num_samples)

    def memory_needs(self, plan: PlanContext) -> Footprint:
        """The scoring passes over its batches (the plan): batch_size groups of group_size rows, as long
        as the longest input once loaded, else as the caps allow."""
        hp = self.hparams
        longest = max((len(r) for g in self.groups for r in g.rows), default=None)
        return ScoringPass(rows=hp.batch_size * self.group_size, length=max(hp.max_length, hp.window), longest=longest).memory_needs(plan)

    def _inputs(self, name: str, n: int, tokenizer) -> list[list[int]]:
        hp = self.hparams
        given = self.texts.get(name)
        if given is not None:  # texts in memory: sampled as a prompt set's records are
            return tokenize([given[i] for i in choose(len(given), n, hp.seed, name)], tokenizer, hp.max_length, name)
        files = (hp.data_files or {}).get(name)
        return sample_inputs(name, n, tokenizer, hp.seed, hp.max_length, hp.window, files)

    def build_groups(self) -> list[Group]:
        """Sample and tokenize every group (deterministic for a given seed)."""
        hp = self.hparams
        tokenizer = self.tokenizer
        n = hp.num_samples
        groups: list[Group] = []
        if hp.mode == "single":
            for d, name in enumerate(self.dataset_names):
                for row in self._inputs(name, n, tokenizer):
                    groups.append(Group(len(groups), [row], [d]))
            return groups
        if hp.mode == "sts":
            name = self.dataset_names[0]
            first, second, gold = sample_sts_texts(name, n, hp.seed, (hp.data_files or {}).get(name))
            both = zip(tokenize(first, tokenizer, hp.max_length, name), tokenize(second, tokenizer, hp.max_length, name), strict=True)
            return [Group(i, [a, b], [0, 0], g, [s, t]) for i, ((a, b), g, s, t) in enumerate(zip(both, gold, first, second, strict=True))]
        if hp.mode == "set":
            return [self._set_group()]
        # pairs: 2n distinct samples per dataset; first half "a", second half "b"
        drawn = [self._inputs(name, 2 * n, tokenizer) for name in self.dataset_names]
        for i in range(n):
            rows, datasets = [], []
            for d, samples in enumerate(drawn):
                rows += [samples[i], samples[n + i]]
                datasets += [d, d]
            groups.append(Group(i, rows, datasets))
        return groups

    def _set_group(self) -> Group:
        """Mode `set`: every text of the set as one group; its ratings checked against the texts."""
        hp, name = self.hparams, self.dataset_names[0]
        texts = self.texts[name] if name in self.texts else set_texts(name, (hp.data_files or {}).get(name))
        if len(texts) < 2:
            raise ValueError(f"Set {name!r} has {len(texts)} text(s); all-pairs similarity needs at least 2")
        if name in RATED_SETS:
            self.ratings = rated_pairs(RATED_SETS[name].similarity(), len(texts))
        elif hp.similarity is not None:
            self.ratings = rated_pairs(read_similarity(hp.similarity), len(texts))
        rows = tokenize(texts, self.tokenizer, hp.max_length, name)  # after the ratings: a bad file fails first
        return Group(0, rows, [0] * len(rows), texts=texts)

    def setup(self, stage: str | None = None) -> None:
        if not self.groups:
            for name, files in (self.hparams.data_files or {}).items():
                check_files(name, files)  # every file, before the tokenizer and the model load: one that cannot be read is named
            self.tokenizer = load_tokenizer(tokenizer_name(self.hparams.tokenizer, self), self.hparams.trust_remote_code)
            self.groups = self.build_groups()

    def predict_dataloader(self) -> DataLoader:
        pad_id = self.tokenizer.pad_token_id
        formed = batches(self.groups, self.hparams.batch_size, by_dataset=self.hparams.mode == "single")
        return DataLoader(formed, batch_size=1, shuffle=False, collate_fn=partial(_collate_batch, pad_id=pad_id, side=self.hparams.padding_side))
