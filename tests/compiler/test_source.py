import json

import pytest

from shearc.compiler.source import resolve_source_config
from shearc.compiler.spec import SourceSpec
from shearc.errors import UserError

from ..helpers import SPECS, TINY_CONFIGS, write_model_dir


def test_local_directory_is_found_relative_to_the_spec(tmp_path):
    write_model_dir(tmp_path, "llama-mha")
    source = resolve_source_config(SourceSpec(model="llama-mha"), tmp_path)
    assert source.origin == "local" and source.shape.heads == 8


def test_local_hf_cache_is_used_without_network(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(TINY_CONFIGS["mistral-gqa"]))
    refs = tmp_path / "hub" / "models--acme--tiny" / "refs"
    refs.mkdir()
    (refs / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    source = resolve_source_config(SourceSpec(model="acme/tiny"), tmp_path)
    assert source.origin == "hf-cache" and source.shape.kv_heads == 2


def test_card_is_the_fallback(tmp_path):
    source = resolve_source_config(SourceSpec(model="meta-llama/Llama-2-7b-hf",
                                       config_card=str(SPECS / "models" / "llama-2-7b.json")), tmp_path)
    assert source.origin == "card" and source.shape.intermediate == 11008


def test_missing_everywhere_lists_what_was_tried(tmp_path):
    with pytest.raises(UserError) as caught:
        resolve_source_config(SourceSpec(model="nobody/nothing", config_card="missing.json"), tmp_path)
    message = str(caught.value)
    assert "local directory" in message and "cache" in message and "missing.json" in message


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    write_model_dir(tmp_path, "llama-mha", {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})
    with pytest.raises(UserError) as caught:
        resolve_source_config(SourceSpec(model="llama-mha"), tmp_path)
    message = str(caught.value)
    assert "GPT2LMHeadModel" in message
    assert all(name in message for name in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"))


def test_fingerprint_follows_structure_not_file_layout(tmp_path):
    first = resolve_source_config(SourceSpec(model="llama-mha"), write_model_dir(tmp_path / "a", "llama-mha").parent)
    again = resolve_source_config(SourceSpec(model="llama-mha"), write_model_dir(tmp_path / "b", "llama-mha").parent)
    other = resolve_source_config(SourceSpec(model="llama-mha"),
                        write_model_dir(tmp_path / "c", "llama-mha", {"rms_norm_eps": 1e-6}).parent)
    assert first.fingerprint == again.fingerprint != other.fingerprint
