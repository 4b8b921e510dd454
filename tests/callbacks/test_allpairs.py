"""All-pairs similarity over a set of texts (data mode `set`) against naive per-text computations."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy import stats

from lit_activation.callbacks.allpairs import AllPairsSimilarity
from lit_activation.callbacks.sts import STSCorrelation
from lit_activation.data.datamodule import ActivationDataModule
from lit_activation.engine import EngineSettings
from lit_activation.models.layers import decoder_layers, layer_index
from lit_activation.module import ActivationModule
from tests.helpers.naive import naive_pooled, naive_scores, naive_tfidf
from tests.helpers.trainers import trainer_for

TEXTS = [
    "The cat sat on the mat.",
    "A dog slept on the warm mat all day long.",
    "Stocks fell sharply",
    "The cat and the dog played.",
    "Rain is expected over the hills tomorrow, with wind.",
]
# human-like ratings of the 10 pairs, all distinct
RATINGS = np.array([
    [1.0, 0.6, 0.1, 0.7, 0.2],
    [0.6, 1.0, 0.15, 0.65, 0.3],
    [0.1, 0.15, 1.0, 0.05, 0.25],
    [0.7, 0.65, 0.05, 1.0, 0.12],
    [0.2, 0.3, 0.25, 0.12, 1.0],
])


def naive_llmdcos(model, rows: list[list[int]]) -> np.ndarray:
    """(layers, N, N) numpy cosines of the texts' naive score vectors (one plain backward per text)."""
    prefix, layers = decoder_layers(model)
    scores = [naive_scores(model, torch.tensor(r)) for r in rows]
    vectors = [
        [np.concatenate([s[n].numpy().ravel() for n in s if layer_index(n, prefix) == layer]).astype(np.float64) for s in scores]
        for layer in range(len(layers))
    ]
    out = np.empty((len(layers), len(rows), len(rows)))
    for layer, v in enumerate(vectors):
        for i in range(len(rows)):
            for j in range(len(rows)):
                out[layer, i, j] = v[i] @ v[j] / np.sqrt((v[i] @ v[i]) * (v[j] @ v[j]))
    return out


def run_set(tmp_path, ratings: dict | None, checkpoint_blocks: bool = False, name: str = "t") -> tuple[dict, ActivationDataModule]:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    similarity = None
    if ratings is not None:
        (tmp_path / "ratings.json").write_text(json.dumps(ratings))
        similarity = str(tmp_path / "ratings.json")
    dm = ActivationDataModule(["news"], mode="set", max_length=64, batch_size=1, data_files={"news": str(docs)}, similarity=similarity)
    module = ActivationModule(model="tiny-llama", engine=EngineSettings(checkpoint_blocks=checkpoint_blocks))
    trainer_for(tmp_path / name, AllPairsSimilarity(layers=[0, 1])).predict(module, datamodule=dm, return_predictions=False)
    out = tmp_path / name / "t" / "version_0"
    assert (out / "allpairs_layers.png").is_file() and (out / "allpairs_heatmap.png").is_file()
    return json.loads((out / "allpairs.json").read_text()), dm


def test_allpairs_equal_naive_and_scipy(tmp_path, tiny_model):
    # blocks recomputed in the backward: the hidden-state hooks must still count each block once
    out, dm = run_set(tmp_path, {"matrix": RATINGS.tolist()}, checkpoint_blocks=True)
    rows = dm.groups[0].rows
    assert len({len(r) for r in rows}) == len(rows)  # precondition: every row padded differently
    model = tiny_model()
    assert (out["n_texts"], out["n_layers"], out["layers"], out["dataset"]) == (5, 2, [0, 1], "news")
    # LLMDcos of every two texts, every layer: the one-batch Gram against per-text autograd scores
    llmdcos = np.array(out["llmdcos"])
    np.testing.assert_allclose(llmdcos, naive_llmdcos(model, rows), rtol=1e-5)
    np.testing.assert_allclose(out["llmdcos_mean"], llmdcos.mean(0), rtol=1e-12)
    # hidden states: each text alone through output_hidden_states, mean-pooled, cosines by hand
    pooled = np.stack([naive_pooled(model, torch.tensor(r)) for r in rows], 1)  # (layers, N, width)
    norms = np.linalg.norm(pooled, axis=-1)
    naive_hidden = np.einsum("lik,ljk->lij", pooled, pooled) / (norms[:, :, None] * norms[:, None, :])
    np.testing.assert_allclose(np.array(out["hidden"]), naive_hidden, rtol=1e-5)
    # TF-IDF fitted on the 5 texts
    tfidf = naive_tfidf(TEXTS)
    np.testing.assert_allclose(out["tfidf"], tfidf @ tfidf.T, rtol=1e-12, atol=1e-15)
    # ratings: the matrix's upper triangle; every ρ is scipy's on the values saved beside it
    pairs = list(combinations(range(5), 2))
    assert out["n_pairs"] == 10 and [tuple(p[:2]) for p in out["ratings"]] == pairs
    gold = [RATINGS[i, j] for i, j in pairs]
    assert [p[2] for p in out["ratings"]] == gold
    hidden = np.array(out["hidden"])
    assert out["layer_sum"] == [llmdcos[0, i, j] + llmdcos[1, i, j] for i, j in pairs]
    assert out["hidden_layer_sum"] == [hidden[0, i, j] + hidden[1, i, j] for i, j in pairs]
    assert (out["spearman"], out["p_value"]) == tuple(stats.spearmanr(out["layer_sum"], gold))
    assert (out["hidden_spearman"], out["hidden_p_value"]) == tuple(stats.spearmanr(out["hidden_layer_sum"], gold))
    assert (out["tfidf_spearman"], out["tfidf_p_value"]) == tuple(stats.spearmanr([out["tfidf"][i][j] for i, j in pairs], gold))
    for layer in range(2):
        assert out["per_layer_spearman"][layer] == stats.spearmanr([llmdcos[layer, i, j] for i, j in pairs], gold).statistic
        assert out["hidden_per_layer_spearman"][layer] == stats.spearmanr([hidden[layer, i, j] for i, j in pairs], gold).statistic


def test_rated_pairs_and_unrated_sets(tmp_path):
    rated, _ = run_set(tmp_path, {"pairs": [[4, 0, 0.2], [1, 3, 0.9], [2, 1, 0.4]]}, name="rated")
    assert rated["ratings"] == [[4, 0, 0.2], [1, 3, 0.9], [2, 1, 0.4]] and rated["n_pairs"] == 3
    llmdcos = np.array(rated["llmdcos"])
    assert rated["layer_sum"] == [llmdcos[:, 4, 0].sum(), llmdcos[:, 1, 3].sum(), llmdcos[:, 2, 1].sum()]
    assert rated["spearman"] == stats.spearmanr(rated["layer_sum"], [0.2, 0.9, 0.4]).statistic
    unrated, _ = run_set(tmp_path, None, name="unrated")
    assert "spearman" not in unrated and "ratings" not in unrated
    # the same texts, the same scores: to rounding (not bit for bit, so that it holds under tests/nudge.py too)
    np.testing.assert_allclose(unrated["llmdcos"], rated["llmdcos"], rtol=1e-5)
    assert np.array_equal(llmdcos, np.swapaxes(llmdcos, 1, 2))  # made exactly symmetric


def test_set_runs_fail_before_the_model_loads(tmp_path, bench_files):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    np.save(tmp_path / "r.npy", RATINGS[:4, :4])
    module = ActivationModule(model="tiny-llama")
    dm = ActivationDataModule(["news"], mode="set", batch_size=1, data_files={"news": str(docs)}, similarity=str(tmp_path / "r.npy"))
    with pytest.raises(ValueError, match=r"Similarity matrix is 4 × 4 but the set has 5 texts"):
        trainer_for(tmp_path, AllPairsSimilarity()).predict(module, datamodule=dm, return_predictions=False)
    assert module.model is None
    dm = ActivationDataModule(["news"], mode="set", batch_size=1, data_files={"news": str(docs)})
    with pytest.raises(ValueError, match=r"STSCorrelation needs data mode 'sts', got 'set'"):
        trainer_for(tmp_path, STSCorrelation()).predict(module, datamodule=dm, return_predictions=False)
    dm = ActivationDataModule(["stsb"], mode="sts", num_samples=3, data_files=bench_files)
    with pytest.raises(ValueError, match=r"AllPairsSimilarity needs data mode 'set', got 'sts'"):
        trainer_for(tmp_path, AllPairsSimilarity()).predict(module, datamodule=dm, return_predictions=False)
    assert module.model is None
