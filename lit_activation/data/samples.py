"""Turn a registered dataset into token sequences: seeded samples, corpus windows, calibration, eval text.

Pure functions of (records, tokenizer, sizes, seed); no Lightning here.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from lit_activation.data.embedded import RATED_SETS
from lit_activation.data.registry import get_spec, load_records
from lit_activation.files import BrokenFile, first_line, json_type, read_json_object

log = logging.getLogger(__name__)

CALIBRATION_SEPARATOR = "\n###\n"


def choose(n_available: int, n: int, seed: int, name: str) -> list[int]:
    """`n` distinct indices out of `n_available`, fixed by `seed`."""
    if n < 1:
        raise ValueError(f"num_samples must be >= 1, got {n}")
    if n > n_available:
        raise ValueError(f"Dataset {name!r} has {n_available} usable samples; {n} were asked for")
    return random.Random(seed).sample(range(n_available), n)


def prompt_texts(name: str, records: Sequence[dict], with_answer: bool = False, indices: Sequence[int] | None = None) -> list[str]:
    """Format every record as the paper's prompt; an empty one is an error naming its index in the
    file (`indices`: the records' indices there, when they are a sample of it)."""
    spec = get_spec(name)
    indices = range(len(records)) if indices is None else indices
    for i, r in zip(indices, records, strict=True):
        # the template's own words ("Question: ?") would hide a record with no text of its own
        fields = [f for f in spec.fields if isinstance(r.get(f), str) or r.get(f) is None]
        if fields and not any(str(r.get(f) or "").strip() for f in fields):
            raise ValueError(f"Dataset {name!r} record {i} has no text: its fields {fields} are empty")
    texts = [spec.format(r, with_answer=with_answer) for r in records]
    for i, text in zip(indices, texts, strict=True):
        if not text.strip():
            raise ValueError(f"Dataset {name!r} record {i} formats to empty text")
    return texts


def special_prefix(row: Sequence[int], special_ids: set[int]) -> int:
    """How many leading ids are special tokens the tokenizer added (BOS and the like)."""
    n = 0
    while n < len(row) and row[n] in special_ids:
        n += 1
    return n


def tokenize(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_length: int, name: str) -> list[list[int]]:
    """Token ids per text, keeping the LAST `max_length` tokens (D is read at the last position).

    A cut text keeps its special prefix (BOS): short inputs have it, so long ones must too.
    Warns with the number of texts that were cut.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    ids = [tokenizer(t)["input_ids"] for t in texts]
    for i, row in enumerate(ids):
        if not row:
            raise ValueError(f"Dataset {name!r} sample {i} tokenizes to nothing: {texts[i]!r}")
    cut = sum(len(row) > max_length for row in ids)
    if cut:
        log.warning("%s: %d of %d inputs were longer than max_length=%d and lost their start", name, cut, len(ids), max_length)
    special = set(tokenizer.all_special_ids)
    out = []
    for row in ids:
        if len(row) > max_length:
            head = row[: min(special_prefix(row, special), max_length - 1)]
            row = head + row[len(row) - (max_length - len(head)) :]
        out.append(row)
    return out


def token_stream(texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, separator: str = "\n\n") -> torch.Tensor:
    """The texts joined by `separator` and tokenized once (1-D LongTensor)."""
    ids = tokenizer(separator.join(texts), return_tensors="pt", verbose=False)["input_ids"][0]
    return ids.long()


def windows(stream: torch.Tensor, n: int, length: int, seed: int, name: str) -> list[list[int]]:
    """`n` non-overlapping windows of `length` tokens at seeded random places in the stream."""
    slots = stream.numel() // length
    if slots < n:
        raise ValueError(f"{name!r} has {stream.numel()} tokens: too few for {n} windows of {length}")
    return [stream[s * length : (s + 1) * length].tolist() for s in choose(slots, n, seed, name)]


def _corpus_texts(name: str, records: Sequence[dict]) -> list[str]:
    texts = [r["text"] for r in records if str(r.get("text", "")).strip()]
    if not texts:
        raise ValueError(f"Corpus {name!r} has no non-empty `text` field")
    return texts


def sample_inputs(
    name: str,
    n: int,
    tokenizer: PreTrainedTokenizerBase,
    seed: int = 0,
    max_length: int = 256,
    window: int = 256,
    data_files: str | Sequence[str] | None = None,
) -> list[list[int]]:
    """`n` seeded inputs of a dataset as token ids: prompts (cut to max_length) or corpus windows."""
    spec = get_spec(name)
    records = load_records(name, data_files)
    if spec.kind == "corpus":
        return windows(token_stream(_corpus_texts(name, records), tokenizer), n, window, seed, name)
    if spec.kind == "sts":
        raise ValueError(f"{name!r} is a sentence-pair (STS) dataset; use mode 'sts'")
    chosen = choose(len(records), n, seed, name)
    return tokenize(prompt_texts(name, [records[i] for i in chosen], indices=chosen), tokenizer, max_length, name)


def sample_sts_texts(
    name: str, n: int, seed: int = 0, data_files: str | Sequence[str] | None = None
) -> tuple[list[str], list[str], list[float]]:
    """`n` seeded sentence pairs as text: (first sentences, second sentences, gold scores)."""
    spec = get_spec(name)
    if spec.kind != "sts":
        raise ValueError(f"{name!r} is not a sentence-pair dataset; STS sets: stsb, sick")
    records = load_records(name, data_files)
    f1, f2, fs = spec.sts_fields
    missing = {f1, f2, fs} - set(records[0])
    if missing:
        raise ValueError(f"{name!r} records lack fields {sorted(missing)}; expected {[f1, f2, fs]}")
    chosen = choose(len(records), n, seed, name)
    pairs = [_sts_pair(name, i, records[i], spec.sts_fields) for i in chosen]
    return [a for a, _, _ in pairs], [b for _, b, _ in pairs], [g for _, _, g in pairs]


def _sts_pair(name: str, index: int, record: dict, fields: tuple[str, str, str]) -> tuple[str, str, float]:
    """(sentence, sentence, gold score) of one record; an empty sentence (a CSV's missing cell reads
    as None, which would be scored as the text 'None') or a score that is no finite number is refused."""
    f1, f2, fs = fields
    texts = ["" if record[f] is None else str(record[f]) for f in (f1, f2)]
    for f, text in zip((f1, f2), texts, strict=True):
        if not text.strip():
            raise ValueError(f"Dataset {name!r} record {index} has an empty {f!r} ({record[f]!r}); every STS pair needs two sentences")
    try:
        gold = float(record[fs])
    except (TypeError, ValueError):
        gold = math.nan
    if not math.isfinite(gold):
        raise ValueError(f"Dataset {name!r} record {index} has {fs!r} {record[fs]!r}; a gold score is a finite number")
    return texts[0], texts[1], gold


def sample_sts_pairs(
    name: str,
    n: int,
    tokenizer: PreTrainedTokenizerBase,
    seed: int = 0,
    max_length: int = 256,
    data_files: str | Sequence[str] | None = None,
) -> tuple[list[list[int]], list[list[int]], list[float]]:
    """`n` seeded sentence pairs: (first sentences' ids, second sentences' ids, gold scores)."""
    first, second, gold = sample_sts_texts(name, n, seed, data_files)
    return tokenize(first, tokenizer, max_length, name), tokenize(second, tokenizer, max_length, name), gold


def calibration_ids(
    name: str,
    tokenizer: PreTrainedTokenizerBase,
    n_samples: int = 128,
    seqlen: int = 2048,
    seed: int = 0,
    data_files: str | Sequence[str] | None = None,
) -> torch.Tensor:
    """Calibration batch (n_samples, seqlen) for pruning (docs/method.md §5).

    Corpora: random windows. Task sets: formatted examples with answers, shuffled with the seed,
    joined by "\\n###\\n" and cut into seqlen pieces (the paper's MMLU/SIQA calibration).
    """
    spec = get_spec(name)
    records = load_records(name, data_files)
    if spec.kind == "corpus":
        texts = _corpus_texts(name, records)
        return torch.tensor(windows(token_stream(texts, tokenizer), n_samples, seqlen, seed, name))
    if spec.kind == "sts":
        texts = [str(r[spec.sts_fields[0]]) for r in records]
    else:
        texts = prompt_texts(name, records, with_answer=True)
    random.Random(seed).shuffle(texts)
    stream = token_stream(texts, tokenizer, CALIBRATION_SEPARATOR)
    if stream.numel() < n_samples * seqlen:
        raise ValueError(f"{name!r} gives {stream.numel()} tokens; calibration needs {n_samples}×{seqlen}")
    return stream[: n_samples * seqlen].view(n_samples, seqlen)


def chunk_stream(stream: torch.Tensor, seqlen: int, max_chunks: int | None = None) -> torch.Tensor:
    """(n_chunks, seqlen) non-overlapping chunks from the start of a 1-D token stream."""
    if seqlen < 2:
        raise ValueError(f"seqlen must be >= 2, got {seqlen}")
    n = stream.numel() // seqlen
    if max_chunks is not None:
        n = min(n, max_chunks)
    if n < 1:
        raise ValueError(f"The evaluation text has {stream.numel()} tokens: fewer than one chunk of seqlen={seqlen}")
    return stream[: n * seqlen].view(n, seqlen)


def evaluation_stream(name: str, tokenizer: PreTrainedTokenizerBase, data_files: str | Sequence[str] | None = None) -> torch.Tensor:
    """The perplexity text (docs/method.md §6): every document joined with "\\n\\n", tokenized once."""
    spec = get_spec(name)
    if spec.kind != "corpus":
        raise ValueError(f"Perplexity needs running text; {name!r} is a {spec.kind} set. Corpora: wikitext2, c4, wiki, news")
    records = load_records(name, data_files)
    _corpus_texts(name, records)  # validates that there is text at all
    # Keep empty lines: the standard protocol joins WikiText-2's raw lines, blanks included.
    return token_stream([str(r.get("text") or "") for r in records], tokenizer)


# --- Text sets (data mode `set`): every text of one set, optionally with human similarity ratings ---

RatedPairs = list[tuple[int, int, float]]


def set_texts(name: str, data_files: str | Sequence[str] | None = None) -> list[str]:
    """Every text of a set, in file order (ratings index them): a rated set's documents, a prompt
    set's formatted prompts, or a corpus's records (each record's `text`, whole)."""
    if name in RATED_SETS:
        return RATED_SETS[name].texts()
    spec = get_spec(name)
    if spec.kind == "sts":
        raise ValueError(f"{name!r} is a sentence-pair (STS) dataset; use mode 'sts'")
    records = load_records(name, data_files)
    if spec.kind == "prompt":
        return prompt_texts(name, records)
    texts = [str(r.get("text") or "") for r in records]
    for i, text in enumerate(texts):
        if not text.strip():  # not skipped: ratings index the records, so none may go missing
            raise ValueError(f"Set {name!r} record {i} has an empty `text`; every record of a set is one text")
    return texts


def read_similarity(path: str | Path) -> np.ndarray | list:
    """Human ratings from a file: `.json` {"matrix": N × N} or {"pairs": [[i, j, score], ...]},
    `.npy` (an N × N array) or `.txt` (a whitespace-separated N × N matrix)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Similarity file {str(path)!r} does not exist")
    if path.suffix not in (".json", ".npy", ".txt"):
        raise ValueError(f"Unsupported similarity file {str(path)!r}: accepted .json ({{matrix: ...}} or {{pairs: ...}}), .npy, .txt")
    remedy = "give human ratings as .json {\"matrix\": N × N} or {\"pairs\": [[i, j, score], ...]}, .npy or .txt (an N × N matrix)"
    if path.suffix != ".json":
        try:  # numpy's own readers: a cut .npy or a .txt cell that is no number raise these
            return np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2)
        except (ValueError, EOFError, OSError) as err:
            raise BrokenFile(path, f"cannot be read as a matrix of numbers ({first_line(err)})", remedy) from None
    data = read_json_object(path, remedy)
    if len(data) != 1 or next(iter(data)) not in ("matrix", "pairs"):
        raise BrokenFile(path, "must hold one key, 'matrix' (N × N) or 'pairs' ([[i, j, score], ...])", remedy)
    key, value = next(iter(data.items()))
    if not isinstance(value, list):
        raise BrokenFile(path, f"holds {key!r} as {json_type(value)}, not a list", remedy)
    if key == "pairs":
        return list(value)
    try:
        return np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise BrokenFile(path, f"'matrix' must be N lists of N numbers ({first_line(err)})", remedy) from None


def matrix_pairs(matrix: np.ndarray, n_texts: int) -> RatedPairs:
    """The rated pairs of a symmetric N × N matrix: its upper triangle, row-major (the diagonal is unused)."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"Similarity matrix is {' × '.join(map(str, matrix.shape))}, not N × N")
    if matrix.shape[0] != n_texts:
        raise ValueError(f"Similarity matrix is {matrix.shape[0]} × {matrix.shape[0]} but the set has {n_texts} texts (one row per text)")
    off = ~np.eye(n_texts, dtype=bool)
    if not np.isfinite(matrix[off]).all():
        raise ValueError("Similarity matrix has NaN/inf off the diagonal; for a partial rating give pairs {\"pairs\": [[i, j, score], ...]}")
    gap = np.abs(matrix - matrix.T) - 1e-9 * np.maximum(1.0, np.abs(matrix))  # > 0 where not symmetric
    gap[~off] = -1.0
    if n_texts and gap.max() > 0:
        i, j = (int(k) for k in np.unravel_index(int(gap.argmax()), gap.shape))
        raise ValueError(f"Similarity matrix is not symmetric: [{i}, {j}] = {float(matrix[i, j])!r} but [{j}, {i}] = {float(matrix[j, i])!r}")
    upper = np.triu_indices(n_texts, 1)
    return [(int(i), int(j), float(matrix[i, j])) for i, j in zip(*upper, strict=True)]


def _index(x: object) -> int | None:
    """x as a text index when it is a whole number (JSON may write 3 as 3.0), else None."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    return int(x) if isinstance(x, float) and x.is_integer() else None


def check_pairs(pairs: Sequence, n_texts: int) -> RatedPairs:
    """Rated pairs [i, j, score] as (i, j, score) tuples, checked against a set of n_texts texts."""
    out = []
    for k, pair in enumerate(pairs):
        if not isinstance(pair, (list, tuple)) or len(pair) != 3:
            raise ValueError(f"Rated pair {k} is {pair!r}; expected [i, j, score]")
        i, j, score = _index(pair[0]), _index(pair[1]), pair[2]
        if i is None or j is None:
            raise ValueError(f"Rated pair {k} {list(pair)} has a non-integer text index")
        if not (0 <= i < n_texts and 0 <= j < n_texts):
            raise ValueError(f"Rated pair {k} {list(pair)} has a text index outside 0..{n_texts - 1} (the set has {n_texts} texts)")
        if i == j:
            raise ValueError(f"Rated pair {k} {list(pair)} rates text {i} with itself")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(f"Rated pair {k} {list(pair)} has a non-finite or non-numeric score")
        out.append((i, j, float(score)))
    return out


def rated_pairs(ratings: np.ndarray | Sequence, n_texts: int) -> RatedPairs:
    """Check human ratings (an N × N matrix or [i, j, score] pairs) against a set of n_texts texts.

    Spearman needs at least 3 rated pairs; fewer is an error, raised before any scoring.
    """
    pairs = matrix_pairs(ratings.astype(np.float64), n_texts) if isinstance(ratings, np.ndarray) else check_pairs(ratings, n_texts)
    if len(pairs) < 3:
        raise ValueError(f"{len(pairs)} rated pair(s); Spearman needs at least 3")
    return pairs
