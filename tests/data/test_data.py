"""Dataset registry, prompt formats, sampling and the datamodule, offline on fixture files."""

from __future__ import annotations

import logging

import pytest

from lit_activation.data import prompts
from lit_activation.data.datamodule import ActivationDataModule, Group, batches, pad_groups
from lit_activation.data.registry import REGISTRY, get_spec, load_records
from lit_activation.data.samples import calibration_ids, evaluation_stream, sample_inputs, sample_sts_pairs, sample_sts_texts

HUB_SETS = ["boolq", "mmlu", "siqa", "piqa", "hellaswag", "gsm8k", "c4", "wikitext2", "stsb", "sick"]


def test_registry_lists_the_papers_and_embedded_sets():
    assert set(HUB_SETS) | {"humaneval", "wiki", "news", "reviews"} <= set(REGISTRY)
    with pytest.raises(ValueError, match="Unknown dataset 'nope'.*boolq"):
        get_spec("nope")


@pytest.mark.parametrize("name", HUB_SETS)
def test_every_benchmark_loads_from_local_files(name, bench_files):
    records = load_records(name, bench_files[name])
    assert len(records) >= 24


def test_prompt_formats_are_the_papers():
    assert prompts.boolq({"passage": "P", "question": "is it", "answer": True}) == "P\nQuestion: is it?\nAnswer:"
    assert prompts.mmlu({"subject": "high_school_math", "question": "Q?", "choices": ["1", "2", "3", "4"], "answer": 2}) == (
        "The following are multiple choice questions (with answers) about high school math.\n\nQ?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    )
    assert prompts.mmlu({"subject": "x", "question": "Q", "choices": ["a", "b"], "answer": 1}, with_answer=True).endswith("Answer: B")
    assert prompts.siqa({"context": "C", "question": "Why?", "answerA": "a", "answerB": "b", "answerC": "c", "label": "2"}, True) == (
        "C\nQuestion: Why?\nA. a\nB. b\nC. c\nAnswer: B"
    )
    assert prompts.piqa({"goal": "G", "sol1": "x", "sol2": "y", "label": 1}) == "G\nA. x\nB. y\nAnswer:"
    assert prompts.hellaswag({"ctx": "C", "endings": ["1", "2", "3", "4"], "label": "0"}) == "C\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
    assert prompts.humaneval({"prompt": "def f():\n"}) == "def f():\n"
    assert prompts.gsm8k({"question": "2+2?", "answer": "4"}) == "2+2?"


def test_embedded_sets_are_complete():
    assert len(load_records("humaneval")) == 164
    assert len(load_records("news")) == 300
    assert len(load_records("reviews")) == 200
    wiki = load_records("wiki")
    assert len(wiki) == 106 and not any("'''" in r["text"] for r in wiki)


def test_sampling_is_seeded_and_bounded(bench_files, tiny_tok):
    a = sample_inputs("boolq", 5, tiny_tok, seed=3, data_files=bench_files["boolq"])
    assert a == sample_inputs("boolq", 5, tiny_tok, seed=3, data_files=bench_files["boolq"])
    assert a != sample_inputs("boolq", 5, tiny_tok, seed=4, data_files=bench_files["boolq"])
    with pytest.raises(ValueError, match="has 24 usable samples; 25 were asked"):
        sample_inputs("boolq", 25, tiny_tok, data_files=bench_files["boolq"])


@pytest.mark.parametrize("name", ["boolq", "mmlu", "siqa", "piqa", "hellaswag", "gsm8k"])
def test_fixture_rows_differ_at_their_end_and_in_length(name, bench_files, tiny_tok):
    # prompts keep their END when cut: rows must differ there, or short max_lengths would score duplicates
    rows = sample_inputs(name, 24, tiny_tok, max_length=32, data_files=bench_files[name])
    assert len({tuple(r) for r in rows}) == 24
    whole = sample_inputs(name, 24, tiny_tok, max_length=10**4, data_files=bench_files[name])
    assert len({len(r) for r in whole}) > 1  # batches of them get padded


def test_too_long_prompts_keep_their_end_with_a_warning(bench_files, tiny_tok, caplog):
    with caplog.at_level(logging.WARNING):
        rows = sample_inputs("boolq", 4, tiny_tok, max_length=10, data_files=bench_files["boolq"])
    assert all(len(r) == 10 for r in rows)
    assert tiny_tok.decode(rows[0]).endswith("Answer:")
    assert "4 of 4 inputs were longer than max_length=10" in caplog.text


def test_corpus_windows_and_errors(bench_files, tiny_tok, tmp_path):
    rows = sample_inputs("c4", 3, tiny_tok, window=32, data_files=bench_files["c4"])
    assert [len(r) for r in rows] == [32, 32, 32]
    with pytest.raises(ValueError, match="too few"):
        sample_inputs("c4", 3, tiny_tok, window=10**6, data_files=bench_files["c4"])
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        load_records("boolq", str(tmp_path / "nothere.jsonl"))
    with pytest.raises(ValueError, match="Unsupported data files"):
        load_records("boolq", str(tmp_path / "boolq.txt") if (tmp_path / "boolq.txt").write_text("x") else "")


def test_empty_text_is_an_error(tmp_path, tiny_tok):
    f = tmp_path / "gsm8k.jsonl"
    f.write_text('{"question": "   ", "answer": "1"}\n')
    with pytest.raises(ValueError, match="record 0 formats to empty text"):
        sample_inputs("gsm8k", 1, tiny_tok, data_files=str(f))
    # a template's own words ("\nQuestion: ?\nAnswer:") around no text of the record's are no prompt
    f = tmp_path / "boolq.jsonl"
    f.write_text('{"passage": "Cats purr.", "question": "do cats purr", "answer": true}\n{"passage": "", "question": " ", "answer": false}\n')
    with pytest.raises(ValueError, match=r"^Dataset 'boolq' record 1 has no text: its fields \['question', 'passage'\] are empty$"):
        sample_inputs("boolq", 2, tiny_tok, data_files=str(f))


def test_sts_pairs_and_calibration(bench_files, tiny_tok):
    first, second, gold = sample_sts_pairs("sick", 6, tiny_tok, data_files=bench_files["sick"])
    assert len(first) == len(second) == len(gold) == 6 and all(1.0 <= g <= 5.0 for g in gold)
    calib = calibration_ids("mmlu", tiny_tok, n_samples=4, seqlen=64, data_files=bench_files["mmlu"])
    assert calib.shape == (4, 64)
    assert "\n###\n" in tiny_tok.decode(calib.flatten())  # the rows are consecutive pieces of the joined examples
    stream = evaluation_stream("wikitext2", tiny_tok, bench_files["wikitext2"])
    assert stream.ndim == 1 and stream.numel() > 1000


def test_pad_groups_marks_real_tokens():
    batch = pad_groups([Group(0, [[5, 6, 7], [8]], [0, 1])], pad_id=0, side="left")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["dataset_index"].tolist() == [0, 1]


def test_datamodule_pairs_layout(bench_files):
    dm = ActivationDataModule(["boolq", "mmlu"], tokenizer="tiny-llama", mode="pairs", num_samples=3, batch_size=2, data_files=bench_files)
    dm.setup("predict")
    assert dm.group_size == 4 and len(dm.groups) == 3
    group = dm.groups[0]
    assert group.datasets == [0, 0, 1, 1] and group.rows[0] != group.rows[1]  # X_a vs X_b differ
    batch = next(iter(dm.predict_dataloader()))
    assert batch["input_ids"].shape[0] == 8 and batch["group_index"].tolist() == [0, 1]


def test_datamodule_rejects_bad_arguments(bench_files):
    with pytest.raises(ValueError, match="Unknown dataset"):
        ActivationDataModule(["boolq", "nope"])
    with pytest.raises(ValueError, match="twice"):
        ActivationDataModule(["boolq", "boolq"])
    with pytest.raises(ValueError, match="Unknown dataset 'boolQ'"):
        ActivationDataModule(["boolq"], data_files={"boolQ": bench_files["boolq"]})
    with pytest.raises(ValueError, match="exactly one STS"):
        ActivationDataModule(["stsb", "sick"], mode="sts")


def test_batches_never_mix_datasets_and_keep_group_order():
    groups = [Group(i, [[5]], [d]) for i, d in enumerate([0, 0, 0, 1, 1, 2])]
    formed = batches(groups, 2, by_dataset=True)
    assert [[g.index for g in b] for b in formed] == [[0, 1], [2], [3, 4], [5]]
    assert [[g.index for g in b] for b in batches(groups, 4, by_dataset=False)] == [[0, 1, 2, 3], [4, 5]]


def test_a_score_callback_on_the_wrong_data_mode_stops_before_the_model_loads(bench_files, tmp_path, monkeypatch):
    from lightning.pytorch import Trainer

    from lit_activation.callbacks.llmdcos import LLMDcos
    from lit_activation.module import ActivationModule

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the data mode was checked")

    monkeypatch.setattr("lit_activation.module.load_causal_lm", no_loading)
    dm = ActivationDataModule(["boolq"], mode="single", num_samples=2, data_files=bench_files)
    trainer = Trainer(accelerator="cpu", logger=False, callbacks=[LLMDcos()], inference_mode=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="LLMDcos needs data mode 'pairs', got 'single'"):
        trainer.predict(ActivationModule(model="tiny-llama"), datamodule=dm, return_predictions=False)


def test_missing_fields_name_the_dataset_file_and_fields_before_the_model_loads(tmp_path, monkeypatch):
    from lightning.pytorch import Trainer

    from lit_activation.callbacks.counts import ActivationCounts
    from lit_activation.module import ActivationModule

    f = tmp_path / "boolq.jsonl"
    f.write_text('{"question": "is it", "answer": true}\n')
    message = r"boolq.jsonl: line 1 lacks the field 'passage'; each record of 'boolq' needs question \(text\), passage \(text\), answer \(true or false\)$"
    with pytest.raises(ValueError, match=message):
        load_records("boolq", str(f))

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the data were checked")

    monkeypatch.setattr("lit_activation.module.load_causal_lm", no_loading)
    dm = ActivationDataModule(["boolq"], tokenizer="tiny-llama", num_samples=1, data_files={"boolq": str(f)})
    trainer = Trainer(accelerator="cpu", logger=False, callbacks=[ActivationCounts()], inference_mode=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match=message):
        trainer.predict(ActivationModule(model="tiny-llama"), datamodule=dm, return_predictions=False)


def test_truncation_keeps_the_special_prefix():
    from tokenizers import processors

    from lit_activation.data.samples import tokenize
    from lit_activation.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    bos = tok.convert_tokens_to_ids("<bos>")
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", bos)])
    assert tok("ab")["input_ids"][0] == bos  # this tokenizer adds BOS, like Llama's
    long, short = tokenize(["abcdefghij", "ab"], tok, 5, "x")
    assert long[0] == bos and tok.decode(long[1:]) == "ghij"  # BOS, then the last 4 characters
    assert short == tok("ab")["input_ids"]
    assert len(long) == 5


def test_trust_remote_code_and_the_model_reach_the_data_tokenizer(monkeypatch):
    import functools
    from pathlib import Path

    from lit_activation.cli import build_cli
    from lit_activation.trainer import ActivationTrainer

    seen = {}

    @functools.wraps(ActivationTrainer.predict)  # the CLI reads the subcommand's options from its signature
    def record(self, model=None, dataloaders=None, datamodule=None, **kwargs):
        seen.update(datamodule.hparams)

    monkeypatch.setattr(ActivationTrainer, "predict", record)
    config = Path(__file__).parents[2] / "configs" / "counts_embedded.yaml"
    build_cli(["predict", "--config", str(config), "--model.model", "tiny-gpt2", "--model.trust_remote_code", "true"])
    assert seen["tokenizer"] == "tiny-gpt2" and seen["trust_remote_code"] is True


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('"A man plays.",,3.0', r"line 3 has no value for 'sentence2'"),
        ('"A man plays.","  ",3.0', r"line 3 has no value for 'sentence2'"),
        ('"A man plays.","A man sings.",high', r"line 3 has 'score' as 'high'; it must be a number"),
        ('"A man plays.","A man sings.",', r"line 3 has no value for 'score'"),
    ],
)
def test_an_sts_record_without_two_sentences_or_a_score_is_named(tmp_path, row, message):
    path = tmp_path / "stsb.csv"
    path.write_text(f'sentence1,sentence2,score\n"A dog runs.","A dog sprints.",4.5\n{row}\n"A cat sits.","A cat naps.",3.5\n')
    with pytest.raises(ValueError, match=f"^{path}: {message}; each record of 'stsb' needs sentence1 \\(text\\)"):
        sample_sts_texts("stsb", 3, seed=0, data_files=str(path))


def test_a_nan_gold_score_in_a_json_lines_file_is_named(tmp_path):
    path = tmp_path / "stsb.jsonl"
    records = [("A dog runs.", "A dog sprints.", "4.5"), ("A man plays.", "A man sings.", "NaN"), ("A cat sits.", "A cat naps.", "3.5")]
    path.write_text("".join(f'{{"sentence1": "{a}", "sentence2": "{b}", "score": {g}}}\n' for a, b, g in records))
    with pytest.raises(ValueError, match=r"^Dataset 'stsb' record 1 has 'score' nan; a gold score is a finite number"):
        sample_sts_texts("stsb", 3, seed=0, data_files=str(path))


def test_sts_records_that_are_whole_read_as_they_are(tmp_path):
    path = tmp_path / "stsb.csv"
    path.write_text('sentence1,sentence2,score\n"A dog runs.","A dog sprints.",4.5\n"A man plays.","1990",3.0\n"A cat sits.","A cat naps.",3.5\n')
    first, second, gold = sample_sts_texts("stsb", 3, seed=0, data_files=str(path))
    expected = [("A cat sits.", "A cat naps.", 3.5), ("A dog runs.", "A dog sprints.", 4.5), ("A man plays.", "1990", 3.0)]
    assert sorted(zip(first, second, gold, strict=True)) == expected


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("window", 0, "window must be >= 2, got 0"), ("window", -5, "window must be >= 2, got -5"), ("max_length", 1, "max_length must be >= 2, got 1"),
     ("num_samples", 0, "num_samples must be >= 1, got 0")],
)
def test_lengths_and_counts_that_cannot_be_are_refused_when_the_data_module_is_built(option, value, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        ActivationDataModule(["wiki"], **{option: value})
    ActivationDataModule(["wiki"], **{option: {"window": 2, "max_length": 2, "num_samples": 1}[option]})  # the edge itself is accepted


def test_a_hub_dataset_out_of_reach_is_one_line_naming_the_way_out():
    """Tests run offline: the hub is out of reach, as on a machine without network."""
    with pytest.raises(FileNotFoundError, match=r"^Could not load dataset 'sick' from the hub .* Offline, pass local files: data_files: \{sick: "):
        load_records("sick")
