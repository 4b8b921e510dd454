"""A model's files damaged the ways copies get damaged (Hypothesis): a local directory's weights, config and
tokenizer files, and GGUF files. Each is refused in one line naming the file, before any weight loads; and
what the check lets through, the library that reads it reads too."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from lit_activation.cli import main
from lit_activation.files import BrokenFile, safetensors_problem
from lit_activation.models import loading
from lit_activation.models.files import check_gguf, check_model_dir
from lit_activation.models.tiny import tiny_tokenizer
from tests.helpers.damage import damaged_bytes, damaged_json

FUZZ = settings(max_examples=30, deadline=None)
TENSORS = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.int64), "c": torch.zeros(0)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny model saved as transformers saves one (config, tokenizer, model.safetensors)."""
    from lit_activation.models.tiny import tiny_model

    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_model().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@FUZZ
@given(damaged=damaged_bytes(save(TENSORS)))
def test_a_safetensors_file_is_refused_exactly_when_safetensors_cannot_read_it(damaged):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        path.write_bytes(damaged)
        problem = safetensors_problem(path)
        try:
            load_file(str(path))
        except SafetensorError:
            assert problem is not None  # what safetensors cannot read is named
        else:
            assert problem is None  # and a file it reads is never refused


def test_a_cut_safetensors_file_says_how_much_is_missing(tmp_path):
    data = save(TENSORS)
    (tmp_path / "w.safetensors").write_bytes(data[:-8])
    assert safetensors_problem(tmp_path / "w.safetensors") == "is cut short: it holds 48 bytes of tensor data and its header lists 56"  # 6 × 4 + 4 × 8
    (tmp_path / "w.safetensors").write_bytes(data + b"\0")
    assert safetensors_problem(tmp_path / "w.safetensors") == "has 1 bytes after its last tensor: it was not written whole by safetensors"
    (tmp_path / "w.safetensors").write_bytes(data)
    assert safetensors_problem(tmp_path / "w.safetensors") is None


@pytest.mark.parametrize("file", ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"])
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_a_damaged_file_of_a_model_dir_is_named_before_any_weight_loads(model_dir, file, data):
    original = (model_dir / file).read_bytes()
    damaged = data.draw(damaged_bytes(original) if file.endswith(".safetensors") else damaged_json(json.loads(original)))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(shutil.copytree(model_dir, Path(tmp) / "tiny"))
        (copy / file).write_bytes(damaged)
        try:
            check_model_dir(copy)
        except BrokenFile as err:
            assert err.path == copy / file and str(err).startswith(f"{copy / file}: ") and "\n" not in str(err)
            assert str(err).endswith(f"copy or download the model directory {copy} again")


def test_a_truncated_model_safetensors_is_one_line_before_any_work(model_dir, tmp_path, capsys, no_model_loading):
    copy = Path(shutil.copytree(model_dir, tmp_path / "tiny"))
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--config", str(Path(__file__).parents[2] / "configs" / "counts_embedded.yaml"), "--model.model", str(copy),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    header = 8 + int.from_bytes(weights.read_bytes()[:8], "little")
    whole = (model_dir / "model.safetensors").stat().st_size
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"error: {weights}: is cut short: it holds {5000 - header} bytes of tensor data and its header lists {whole - header}; "
        f"copy or download the model directory {copy} again"
    ]
    assert not (tmp_path / "runs").exists()
    with pytest.raises(BrokenFile, match="model.safetensors: is cut short"):  # the loader checks too (the Python API)
        loading.load_causal_lm(str(copy))


def test_a_model_dir_without_weights_or_with_a_missing_shard_is_named(model_dir, tmp_path):
    copy = Path(shutil.copytree(model_dir, tmp_path / "tiny"))
    (copy / "model.safetensors").rename(copy / "part-1.safetensors")
    with pytest.raises(BrokenFile, match=r"tiny: holds no weights \(model.safetensors, its shards with their index, or pytorch_model.bin\)"):
        check_model_dir(copy)
    check_model_dir(copy, weights=False)  # a tokenizer, or a plan, needs no weights
    index = {"weight_map": {"lm_head.weight": "part-1.safetensors", "model.norm.weight": "part-2.safetensors"}}
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(BrokenFile, match=r"model.safetensors.index.json: lists weight files that are missing: part-2.safetensors;"):
        check_model_dir(copy)
    index["weight_map"]["model.norm.weight"] = "part-1.safetensors"
    (copy / "model.safetensors.index.json").write_text(json.dumps(index))
    check_model_dir(copy)
    (copy / "pytorch_model.bin").write_bytes(b"PK\x03\x04 cut")
    (copy / "model.safetensors.index.json").unlink()
    with pytest.raises(BrokenFile, match=r"pytorch_model.bin: is cut short or is not a PyTorch weights file"):
        check_model_dir(copy)
    (copy / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(BrokenFile, match=r"config.json: has no 'model_type': it is not a transformers model's config"):
        check_model_dir(copy)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> bytes:
    """A small GGUF file, written by gguf's own writer: two tensors and the metadata a reader needs."""
    import gguf

    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("a", np.zeros((4, 8), np.float32))
    writer.add_tensor("b", np.ones(16, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_a_gguf_file_cut_or_damaged_is_refused_naming_it(tiny_gguf, data):
    from gguf import GGUFReader

    damaged = data.draw(damaged_bytes(tiny_gguf))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        path.write_bytes(damaged)
        try:
            check_gguf(path)
        except BrokenFile as err:
            assert err.path == path and "\n" not in str(err)
        else:
            GGUFReader(path)  # what the check lets through, gguf reads


def test_a_truncated_gguf_is_one_line_before_it_is_converted(tiny_gguf, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIT_ACTIVATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "_dequantize", lambda *args: pytest.fail("a file cut short was converted"))
    path = tmp_path / "model.gguf"
    path.write_bytes(tiny_gguf[: len(tiny_gguf) // 2])
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--config", str(Path(__file__).parents[2] / "configs" / "counts_embedded.yaml"), "--model.model", str(path),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        f"error: {path}: is cut short or damaged: its {len(tiny_gguf) // 2} bytes do not hold the tensors its header lists; "
        "copy the .gguf file again (or download it again)"
    ]
    path.write_bytes(tiny_gguf)
    check_gguf(path)  # the whole file passes


@pytest.mark.parametrize(("name", "closest"), [("smollm2-135", "smollm2-135m"), ("SmolLM2-135M", "smollm2-135m"), ("smolm2-135m", "smollm2-135m")])
def test_a_misspelt_model_name_gets_the_closest_known_one(name, closest):
    with pytest.raises(ValueError, match=rf"^model '{name}' is not a name this toolkit knows, nor a local path; did you mean '{closest}'\? accepted: "):
        loading.check_source(name)


def test_a_name_far_from_every_known_one_is_asked_of_the_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="is read as a hub id, but HF_HUB_OFFLINE is set"):
        loading.check_source("gpt2")  # no guess: a hub name of its own, not a typo of tiny-gpt2
    with pytest.raises(ValueError, match=r"^model 'tiny_llama' is not a name this toolkit knows, nor a local path; did you mean 'tiny-llama'\?"):
        loading.check_source("tiny_llama")
    with pytest.raises(ValueError, match=r"Unknown tiny architecture 'lama'; accepted"):
        loading.check_source("tiny-lama")


def test_a_damaged_converted_copy_of_a_gguf_file_says_to_delete_it(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_ACTIVATION_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF stands in")
    target = Path(shutil.copytree(model_dir, loading.converted_dir(gguf)))
    (target / "model.safetensors").write_bytes((target / "model.safetensors").read_bytes()[:-1])
    with pytest.raises(BrokenFile, match=rf"^{target}/model.safetensors: is cut short: .*; delete {target}: it is converted again from {gguf}$"):
        loading.check_source(str(gguf))
