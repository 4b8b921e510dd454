"""Datasets given in memory (`texts`): no file, no registry entry; each text one input, sampled as a
registered prompt set's records are, in modes single, pairs and set."""

from __future__ import annotations

import pytest

from lit_activation.data.datamodule import ActivationDataModule

QUESTIONS = [f"Question number {i}: what is {i} plus {i}?" for i in range(6)]
CODE = [f"def f{i}(x):\n    return x * {i}" for i in range(6)]


def decoded(dm: ActivationDataModule, row: list[int]) -> str:
    return dm.tokenizer.decode(row, skip_special_tokens=True)


def test_pairs_of_texts_in_memory_are_drawn_from_their_own_set_two_different_ones_each():
    dm = ActivationDataModule(["questions", "code"], tokenizer="tiny-llama", mode="pairs", num_samples=3, texts={"questions": QUESTIONS, "code": CODE})
    dm.setup("predict")
    assert len(dm.groups) == 3
    seen = {"questions": set(), "code": set()}
    for group in dm.groups:
        texts = [decoded(dm, row) for row in group.rows]  # [questions a, questions b, code a, code b]
        assert group.datasets == [0, 0, 1, 1]
        assert {texts[0], texts[1]} <= set(QUESTIONS) and texts[0] != texts[1]
        assert {texts[2], texts[3]} <= set(CODE) and texts[2] != texts[3]
        seen["questions"] |= {texts[0], texts[1]}
        seen["code"] |= {texts[2], texts[3]}
    assert len(seen["questions"]) == len(seen["code"]) == 6  # 2 × num_samples distinct texts of each set
    again = ActivationDataModule(["questions", "code"], tokenizer="tiny-llama", mode="pairs", num_samples=3, texts={"questions": QUESTIONS, "code": CODE})
    again.setup("predict")
    assert [g.rows for g in again.groups] == [g.rows for g in dm.groups]  # seeded


def test_texts_in_memory_beside_a_registered_set_and_as_one_set_of_all_pairs(bench_files):
    dm = ActivationDataModule(["boolq", "code"], tokenizer="tiny-llama", num_samples=2, data_files={"boolq": bench_files["boolq"]}, texts={"code": CODE})
    dm.setup("predict")
    assert [g.datasets for g in dm.groups] == [[0], [0], [1], [1]]
    assert all(decoded(dm, g.rows[0]) in CODE for g in dm.groups[2:])
    whole = ActivationDataModule(["code"], tokenizer="tiny-llama", mode="set", batch_size=1, texts={"code": CODE})
    whole.setup("predict")
    assert [decoded(whole, row) for row in whole.groups[0].rows] == CODE and whole.groups[0].texts == CODE  # every text, in order


def test_texts_are_not_hyperparameters_to_log():
    dm = ActivationDataModule(["code"], num_samples=2, texts={"code": CODE})
    assert "texts" not in dm.hparams and dm.texts == {"code": CODE}


@pytest.mark.parametrize(("options", "message"), [
    (dict(datasets=["questions"], texts={"questions": QUESTIONS, "code": CODE}), r"texts names 'code', which datasets \['questions'\] does not list"),
    (dict(datasets=["code"], texts={"code": []}), r"texts 'code' must be a non-empty list of strings"),
    (dict(datasets=["code"], texts={"code": "def f(): pass"}), r"texts 'code' must be a non-empty list of strings"),
    (dict(datasets=["code"], texts={"code": ["def f(): pass", "  "]}), r"texts 'code' item 1 is '  '; every text is a non-empty string"),
    (dict(datasets=["code"], texts={"code": CODE}, mode="sts"), r"texts \(datasets in memory\) take modes single, pairs or set"),
    (dict(datasets=["code"], texts={"code": CODE}, data_files={"code": "c.jsonl"}), r"'code' is given both as texts and as data_files"),
    (dict(datasets=["code", "nope"], texts={"code": CODE}), r"Unknown dataset 'nope'"),
])
def test_texts_that_cannot_be_used_are_refused_when_the_data_module_is_built(options, message):
    with pytest.raises(ValueError, match=message):
        ActivationDataModule(**{"num_samples": 2, **options})


@pytest.mark.parametrize(("mode", "num_samples", "fits"), [("pairs", 3, True), ("pairs", 4, False), ("single", 6, True), ("single", 7, False)])
def test_more_samples_than_texts_are_refused_when_the_data_module_is_built(mode, num_samples, fits):
    build = lambda: ActivationDataModule(["code"], mode=mode, num_samples=num_samples, texts={"code": CODE})  # noqa: E731
    if fits:
        build()
        return
    with pytest.raises(ValueError, match=rf"texts 'code' has 6 texts; mode '{mode}' with num_samples {num_samples} draws \d+ distinct ones"):
        build()
