"""Baselines beside LLMDcos for pair similarity (STS, all-pairs sets): hidden states and TF-IDF.

- Hidden states: per decoder layer l, the cosine of two texts' mean-pooled (over real tokens)
  outputs of block l, taken by forward hooks from the scoring forward itself (no extra pass). The
  output of the last block is the residual stream BEFORE the final norm (Hugging Face's
  `hidden_states[-1]` is after it); block l < L-1 is `hidden_states[l + 1]`.
- TF-IDF: the cosine of two texts' TF-IDF vectors, as scikit-learn's TfidfVectorizer defaults
  (lower-cased words of 2+ word characters, raw counts, smooth idf ln((1+n)/(1+df)) + 1, rows
  l2-normalised), fitted over the run's texts. Written here because scikit-learn is not a
  dependency; tests compare it with a hand computation (and with scikit-learn where installed).

Pure PyTorch / numpy / scipy; the Lightning callbacks only call these.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from scipy import sparse
from torch import Tensor, nn

# scikit-learn's default token_pattern, on lower-cased text
TOKEN = re.compile(r"(?u)\b\w\w+\b")

# What each baseline is, for the reports (the callbacks add what TF-IDF was fitted on)
HIDDEN = (
    "cosine of the mean-pooled (real tokens) output of each decoder block, from the scoring forward; "
    "the last block's output is taken before the final norm"
)
TFIDF = "cosine of TF-IDF vectors (scikit-learn's TfidfVectorizer defaults)"


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """(batch, width) fp64 mean of `hidden` (batch, time, width) over each row's real tokens.

    Pads are zeroed, not multiplied by 0: a pad position's state may be NaN (0·NaN would not be 0).
    The sum runs in fp64 whatever the compute dtype.
    """
    real = attention_mask.bool()[..., None]
    summed = hidden.detach().masked_fill(~real, 0).sum(1, dtype=torch.float64)
    return summed / attention_mask.sum(-1, keepdim=True).to(torch.float64)


def group_gram(rows: Tensor, n_groups: int) -> Tensor:
    """(groups, R, R) fp64 Gram matrices of consecutive groups of R rows of `rows` (groups·R, width)."""
    flat = rows.to(torch.float64).reshape(n_groups, -1, rows.shape[-1])
    return torch.bmm(flat, flat.transpose(1, 2))


def block_output(output: object) -> Tensor:
    """The hidden states a decoder block returns (a tensor, or the first item of a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


class BlockOutputGram:
    """Per group and layer, the Gram matrix of the rows' mean-pooled decoder-block outputs.

    Forward hooks on the blocks (`attach`) read each block's output during the scoring forward. A
    block is taken at its first firing per batch only: a recomputed block (checkpoint_blocks) must
    not count twice. State per batch: (groups, layers, rows, rows) fp64, like LayerGram.
    """

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        self.blocks = list(blocks)
        self.gram: Tensor | None = None
        self.done: set[int] = set()
        self.mask: Tensor | None = None
        self.n_groups = 0
        self._handles: list = []

    def begin(self, attention_mask: Tensor, n_groups: int) -> None:
        """Start a batch: its mask (pads are not pooled) and its number of groups."""
        rows = attention_mask.shape[0] // n_groups
        self.gram = torch.zeros((n_groups, len(self.blocks), rows, rows), dtype=torch.float64, device=attention_mask.device)
        self.mask, self.n_groups, self.done = attention_mask, n_groups, set()

    def _hook(self, layer: int) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if layer in self.done or self.gram is None:
                return
            self.done.add(layer)
            pooled = mean_pool(block_output(output), self.mask.to(block_output(output).device))
            self.gram[:, layer] = group_gram(pooled, self.n_groups).to(self.gram.device)

        return hook

    def attach(self) -> None:
        """Put the hooks on the blocks (call `detach` when the batch is done, also after an error)."""
        self.detach()
        self._handles = [block.register_forward_hook(self._hook(i)) for i, block in enumerate(self.blocks)]

    def detach(self) -> None:
        """Remove the hooks (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @contextmanager
    def attached(self) -> Iterator[None]:
        """The hooks on the blocks while inside, removed on exit, also on an error."""
        self.attach()
        try:
            yield
        finally:
            self.detach()

    def finish(self) -> Tensor:
        """The batch's Gram matrices; every block must have run once."""
        missing = sorted(set(range(len(self.blocks))) - self.done)
        if missing:
            raise RuntimeError(f"Decoder blocks {missing} produced no output during the scoring forward; the hidden-state baseline needs every block")
        return self.gram


def tokens(text: str) -> list[str]:
    """Words as scikit-learn's TfidfVectorizer finds them: lower-cased runs of 2+ word characters."""
    return TOKEN.findall(text.lower())


def tfidf_vectors(texts: Sequence[str]) -> tuple[sparse.csr_matrix, list[str]]:
    """(n_texts × vocabulary) l2-normalised TF-IDF rows fitted on `texts`, and the vocabulary.

    tf: raw counts; idf = ln((1 + n) / (1 + df)) + 1 (smooth_idf); a text without any word is a
    zero row (its cosines are 0, as scikit-learn's cosine_similarity gives).
    """
    counts = [Counter(tokens(t)) for t in texts]
    vocab = sorted(set().union(*counts)) if counts else []
    column = {w: k for k, w in enumerate(vocab)}
    rows = [i for i, c in enumerate(counts) for _ in c]
    cols = [column[w] for c in counts for w in c]
    tf = np.array([v for c in counts for v in c.values()], dtype=np.float64)
    df = np.bincount(cols, minlength=len(vocab)).astype(np.float64)
    idf = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
    matrix = sparse.csr_matrix((tf * idf[cols], (rows, cols)), shape=(len(texts), len(vocab)))
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(1)).ravel())
    return sparse.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ matrix, vocab


def tfidf_cosines(texts: Sequence[str]) -> Tensor:
    """(n, n) fp64 TF-IDF cosines of every two texts, the IDF fitted on these texts."""
    vectors, _ = tfidf_vectors(texts)
    return torch.from_numpy((vectors @ vectors.T).toarray())


def tfidf_pair_cosines(first: Sequence[str], second: Sequence[str]) -> Tensor:
    """(pairs,) fp64 TF-IDF cosine of first[i] with second[i], the IDF fitted on all 2·pairs texts."""
    if len(first) != len(second):
        raise ValueError(f"Pair counts differ: {len(first)} first texts vs {len(second)} second texts")
    vectors, _ = tfidf_vectors([*first, *second])
    n = len(first)
    return torch.from_numpy(np.asarray(vectors[:n].multiply(vectors[n:]).sum(1)).ravel())


def rated_values(matrices: Tensor, pairs: Sequence[tuple[int, int, float]]) -> Tensor:
    """(n_pairs, ...) entries [..., i, j] of (..., N, N) matrices at the rated pairs (i, j, score)."""
    i = torch.tensor([p[0] for p in pairs], dtype=torch.long)
    j = torch.tensor([p[1] for p in pairs], dtype=torch.long)
    return matrices[..., i, j].movedim(-1, 0)


def symmetric(matrices: Tensor) -> Tensor:
    """(..., N, N) matrices averaged with their transposes (a Gram's (i, j) and (j, i) round differently)."""
    return (matrices + matrices.transpose(-1, -2)) / 2


def off_diagonal_mean(matrices: Tensor) -> Tensor:
    """Mean of the entries off the diagonal of (..., N, N) matrices (N >= 2)."""
    n = matrices.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool)
    return matrices[..., off].mean(-1)
