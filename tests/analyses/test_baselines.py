"""The pair-similarity baselines (TF-IDF, mean-pooled hidden states) and the human ratings of a set,
against hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lit_activation.analyses.baselines import (
    BlockOutputGram,
    group_gram,
    mean_pool,
    off_diagonal_mean,
    rated_values,
    tfidf_cosines,
    tfidf_pair_cosines,
    tfidf_vectors,
    tokens,
)
from lit_activation.data.datamodule import ActivationDataModule
from lit_activation.data.samples import RATED_SETS, rated_pairs, read_similarity
from lit_activation.models.layers import decoder_layers
from tests.helpers.naive import naive_tfidf


def test_tokens_follow_scikit_learns_default_pattern():
    assert tokens("It's A-OK, x_y 42! Ünïcode a") == ["it", "ok", "x_y", "42", "ünïcode"]


def test_tfidf_cosines_by_hand():
    texts = ["the cat sat", "The dog sat down", "a cat", "!"]
    # n = 4 texts; df: the 2, cat 2, sat 2, dog 1, down 1 ("a" and "!" are no words)
    a, b = math.log(5 / 3) + 1, math.log(5 / 2) + 1
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = 2 * a * a / (math.sqrt(3 * a * a) * math.sqrt(2 * a * a + 2 * b * b))  # the, sat shared
    expected[0, 2] = expected[2, 0] = a * a / (math.sqrt(3 * a * a) * a)  # cat shared
    expected[[0, 1, 2], [0, 1, 2]] = 1.0  # the wordless text is a zero row: cosine 0, even with itself
    got = tfidf_cosines(texts)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-15)
    vectors, vocab = tfidf_vectors(texts)
    assert vocab == ["cat", "dog", "down", "sat", "the"]
    np.testing.assert_allclose(vectors.toarray(), naive_tfidf(texts), rtol=1e-12, atol=1e-15)


def test_tfidf_pairs_fit_on_both_sides():
    first, second = ["a cat sat on the mat", "dogs bark", "the mat"], ["the cat sat", "cats purr loudly", "mat mat mat"]
    rows = naive_tfidf(first + second)
    expected = [rows[i] @ rows[3 + i] for i in range(3)]
    np.testing.assert_allclose(tfidf_pair_cosines(first, second).numpy(), expected, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="Pair counts differ: 3 first texts vs 2"):
        tfidf_pair_cosines(first, second[:2])


def sklearn_default_tfidf(docs: list[list[str]]) -> np.ndarray:
    """scikit-learn's TfidfVectorizer() with its defaults, written out with numpy on hand-tokenized docs:
    raw counts × smooth idf ln((1 + n) / (1 + df)) + 1, then each row L2-normalised."""
    vocab = sorted({w for d in docs for w in d})
    tf = np.array([[d.count(w) for w in vocab] for d in docs], dtype=np.float64)
    idf = np.log((1 + len(docs)) / (1 + (tf > 0).sum(axis=0))) + 1
    x = tf * idf
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def test_tfidf_equals_scikit_learns_defaults():
    """The baseline the paper compares with is sklearn's TfidfVectorizer(): same tokens, counts, idf, norm."""
    texts = ["A man is playing a guitar.", "A man plays the guitar!", "The cat naps; the cat, again, naps.", "Stocks fell 3% in 2024"]
    docs = [  # lowercased, words of 2+ word characters ("a" and "3" are dropped), repeats kept
        ["man", "is", "playing", "guitar"],
        ["man", "plays", "the", "guitar"],
        ["the", "cat", "naps", "the", "cat", "again", "naps"],
        ["stocks", "fell", "in", "2024"],
    ]
    rows = sklearn_default_tfidf(docs)
    np.testing.assert_allclose(tfidf_cosines(texts).numpy(), rows @ rows.T, rtol=1e-12, atol=1e-15)
    # one entry by hand: texts 0 and 1 share man and guitar; df 2: man, guitar, the; df 1: is, playing, plays
    shared, df2, df1 = 2 * (math.log(5 / 3) + 1) ** 2, (math.log(5 / 3) + 1) ** 2, (math.log(5 / 2) + 1) ** 2
    norm0, norm1 = math.sqrt(2 * df2 + 2 * df1), math.sqrt(3 * df2 + 1 * df1)
    assert float(tfidf_cosines(texts)[0, 1]) == pytest.approx(shared / (norm0 * norm1), rel=1e-12)


def test_mean_pool_ignores_pads_even_nan_ones():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [float("nan"), 0.0]], [[4.0, 0.0], [float("inf"), 1.0], [2.0, 2.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    pooled = mean_pool(hidden, mask)
    assert pooled.dtype == torch.float64
    assert pooled.tolist() == [[2.0, 4.0], [3.0, 1.0]]
    gram = group_gram(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [3.0, 0.0]]), 2)
    assert gram.tolist() == [[[1.0, 1.0], [1.0, 2.0]], [[4.0, 0.0], [0.0, 9.0]]]


def test_block_outputs_are_taken_once_per_batch(tiny_model):
    model = tiny_model("llama", layers=3)
    grams = BlockOutputGram(decoder_layers(model)[1])
    ids = torch.tensor([[5, 9, 11, 40], [7, 8, 0, 0]])
    mask = (ids != 0).long()
    grams.begin(mask, 1)
    with grams.attached():
        model(input_ids=ids, attention_mask=mask)
        first = grams.gram.clone()
        model(input_ids=ids.flip(0), attention_mask=mask.flip(0))  # a second firing (recomputation) is ignored
    assert torch.equal(grams.finish(), first)
    model(input_ids=ids, attention_mask=mask)  # detached: nothing changes
    assert torch.equal(grams.gram, first)
    grams.begin(mask, 2)
    with pytest.raises(RuntimeError, match=r"Decoder blocks \[0, 1, 2\] produced no output"):
        grams.finish()


def test_rated_values_and_off_diagonal_mean():
    m = torch.arange(18, dtype=torch.float64).reshape(2, 3, 3)
    assert rated_values(m, [(0, 1, 0.5), (2, 0, 0.1)]).tolist() == [[1.0, 10.0], [6.0, 15.0]]
    assert off_diagonal_mean(m).tolist() == [4.0, 13.0]  # (1+2+3+5+6+7)/6, then +9


def test_ratings_from_a_matrix_are_its_upper_triangle(tmp_path):
    matrix = [[1, 0.2, 0.3, 0.4], [0.2, 1, 0.5, 0.6], [0.3, 0.5, 1, 0.7], [0.4, 0.6, 0.7, 1]]
    (tmp_path / "m.json").write_text(json.dumps({"matrix": matrix}))
    np.save(tmp_path / "m.npy", np.array(matrix))
    np.savetxt(tmp_path / "m.txt", np.array(matrix))
    expected = [(0, 1, 0.2), (0, 2, 0.3), (0, 3, 0.4), (1, 2, 0.5), (1, 3, 0.6), (2, 3, 0.7)]
    for name in ("m.json", "m.npy", "m.txt"):
        assert rated_pairs(read_similarity(tmp_path / name), 4) == expected, name
    (tmp_path / "p.json").write_text(json.dumps({"pairs": [[0, 3, 0.9], [2, 1, 0.1], [1, 3.0, 2]]}))
    assert rated_pairs(read_similarity(tmp_path / "p.json"), 4) == [(0, 3, 0.9), (2, 1, 0.1), (1, 3, 2.0)]


@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        (np.ones((3, 4)), r"Similarity matrix is 3 × 4, not N × N"),
        (np.ones((5, 5)), r"Similarity matrix is 5 × 5 but the set has 4 texts"),
        (np.array([[1, 0.2, 0.3, 0.4], [0.2, 1, 0.5, 0.6], [0.3, 0.5, 1, 0.7], [0.4, 0.6, 0.75, 1]]), r"not symmetric: \[2, 3\] = 0.7 but \[3, 2\] = 0.75"),
        (np.array([[1, np.nan, 0, 0], [np.nan, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), r"NaN/inf off the diagonal"),
        ([[0, 1, 0.5], [1, 4, 0.2], [2, 3, 0.1]], r"Rated pair 1 \[1, 4, 0.2\] has a text index outside 0..3 \(the set has 4 texts\)"),
        ([[0, 1, 0.5], [-1, 2, 0.2], [2, 3, 0.1]], r"Rated pair 1 \[-1, 2, 0.2\] has a text index outside"),
        ([[0, 1, 0.5], [1, 2, 0.2]], r"2 rated pair\(s\); Spearman needs at least 3"),
        (np.eye(2), r"1 rated pair\(s\); Spearman needs at least 3"),
        ([[0, 1, 0.5], [1, 1, 0.2], [2, 3, 0.1]], r"Rated pair 1 \[1, 1, 0.2\] rates text 1 with itself"),
        ([[0, 1.5, 0.5], [1, 2, 0.2], [2, 3, 0.1]], r"Rated pair 0 \[0, 1.5, 0.5\] has a non-integer text index"),
        ([[0, 1], [1, 2, 0.2], [2, 3, 0.1]], r"Rated pair 0 is \[0, 1\]; expected \[i, j, score\]"),
        ([[0, 1, float("nan")], [1, 2, 0.2], [2, 3, 0.1]], r"Rated pair 0 \[0, 1, nan\] has a non-finite or non-numeric score"),
    ],
)
def test_bad_ratings_are_one_line_errors(ratings, message):
    n = 2 if isinstance(ratings, np.ndarray) and ratings.shape == (2, 2) else 4
    with pytest.raises(ValueError, match=message) as err:
        rated_pairs(ratings, n)
    assert "\n" not in str(err.value)


def test_bad_similarity_files(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match=r"bad.json: holds a JSON list, not an object; give human ratings as .json"):
        read_similarity(tmp_path / "bad.json")
    (tmp_path / "two.json").write_text(json.dumps({"matrix": [[1]], "pairs": []}))
    with pytest.raises(ValueError, match=r"two.json: must hold one key, 'matrix' \(N × N\) or 'pairs'"):
        read_similarity(tmp_path / "two.json")
    (tmp_path / "cut.npy").write_bytes(b"\x93NUMPY\x01\x00")
    with pytest.raises(ValueError, match=r"cut.npy: cannot be read as a matrix of numbers"):
        read_similarity(tmp_path / "cut.npy")
    (tmp_path / "ragged.json").write_text(json.dumps({"matrix": [[1, 0], [0]]}))
    with pytest.raises(ValueError, match=r"'matrix' must be N lists of N numbers"):
        read_similarity(tmp_path / "ragged.json")
    (tmp_path / "m.csv").write_text("1,0\n0,1\n")
    with pytest.raises(ValueError, match=r"Unsupported similarity file .*accepted .json"):
        read_similarity(tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_similarity(tmp_path / "missing.json")


def write_texts(tmp_path, texts: list[str]) -> str:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return str(path)


def set_module(tmp_path, texts: list[str], **kwargs) -> ActivationDataModule:
    return ActivationDataModule(["news"], tokenizer="tiny-llama", mode="set", batch_size=1, data_files={"news": write_texts(tmp_path, texts)}, **kwargs)


def test_set_mode_is_one_group_of_every_text_in_file_order(tmp_path):
    texts = ["first doc here", "second one", "the third", "and a fourth text"]
    (tmp_path / "r.json").write_text(json.dumps({"pairs": [[0, 1, 0.9], [1, 2, 0.5], [3, 0, 0.1]]}))
    dm = set_module(tmp_path, texts, similarity=str(tmp_path / "r.json"), max_length=8)
    dm.setup()
    (group,) = dm.groups
    assert group.texts == texts and dm.group_size == 4 and group.datasets == [0] * 4
    assert [len(r) for r in group.rows] == [8, 8, 8, 8]  # cut to max_length, the last tokens kept
    assert dm.ratings == [(0, 1, 0.9), (1, 2, 0.5), (3, 0, 0.1)]
    batch = next(iter(dm.predict_dataloader()))
    assert batch["input_ids"].shape == (4, 8) and batch["group_index"].tolist() == [0]


def test_set_mode_errors_before_any_model(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(3))
    with pytest.raises(ValueError, match=r"Similarity matrix is 3 × 3 but the set has 4 texts"):
        set_module(tmp_path, ["a b", "c d", "e f", "g h"], similarity=str(tmp_path / "m.npy")).setup()
    with pytest.raises(ValueError, match=r"all-pairs similarity needs at least 2"):
        set_module(tmp_path, ["only one"]).setup()
    with pytest.raises(ValueError, match=r"record 1 has an empty `text`"):
        set_module(tmp_path, ["one", " ", "three"]).setup()
    with pytest.raises(ValueError, match=r"mode 'set' scores its texts as one group, one batch: set batch_size 1, got 8"):
        ActivationDataModule(["news"], mode="set")
    with pytest.raises(ValueError, match=r"similarity \(human ratings of a set's texts\) needs mode 'set'"):
        ActivationDataModule(["stsb"], mode="sts", similarity="r.json")
    with pytest.raises(ValueError, match=r"'lee' ships its own human ratings"):
        ActivationDataModule(["lee"], mode="set", batch_size=1, similarity="r.json")
    with pytest.raises(ValueError, match=r"mode 'set' takes exactly one set of texts, got \['news', 'wiki'\]"):
        ActivationDataModule(["news", "wiki"], mode="set", batch_size=1)
    with pytest.raises(ValueError, match=r"Unknown dataset 'lee'"):  # a rated set serves mode `set` only
        ActivationDataModule(["lee"], mode="pairs")
    with pytest.raises(ValueError, match=r"'stsb' is a sentence-pair \(STS\) dataset; use mode 'sts'"):
        (tmp_path / "x.csv").write_text("sentence1,sentence2,score\nA dog.,A cat.,0.5\n")
        ActivationDataModule(["stsb"], tokenizer="tiny-llama", mode="set", batch_size=1, data_files={"stsb": str(tmp_path / "x.csv")}).setup()


def test_the_shipped_lee_set_is_50_documents_with_symmetric_ratings():
    lee = RATED_SETS["lee"]
    texts, matrix = lee.texts(), lee.similarity()
    assert len(texts) == 50 and matrix.shape == (50, 50)
    assert np.array_equal(matrix, matrix.T) and np.all(np.diag(matrix) == 1.0)
    pairs = rated_pairs(matrix, 50)
    assert len(pairs) == 50 * 49 // 2 and all(0.0 <= s <= 1.0 for _, _, s in pairs)
