"""Tiny model configs written to local directories, and helpers to write specs next to them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"

# Small but structurally complete: MHA, GQA (Mistral), biased q/k/v (Qwen2), per-head q/k norms (Qwen3),
# Gemma 2 and 3, fused projections (Phi-3), Llama-3.1's rope scaling, tied embeddings.
TINY_CONFIGS: dict[str, dict] = {
    "llama-mha": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 176, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 8,
        "max_position_embeddings": 256, "tie_word_embeddings": False, "rms_norm_eps": 1e-5,
    },
    "mistral-gqa": {
        "architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 192, "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
        "head_dim": 8, "max_position_embeddings": 256, "sliding_window": None, "tie_word_embeddings": False,
    },
    "qwen2-bias": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 256, "tie_word_embeddings": False,
    },
    "qwen3-qknorm": {  # per-head q_norm / k_norm over head_dim; head_dim 16 is not hidden / heads
        "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
        "head_dim": 16, "max_position_embeddings": 256, "tie_word_embeddings": True,
    },
    "gemma2": {  # four (1 + w) norms per block, sqrt(hidden) embedding scale, soft-capping, alternating windows
        "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 160, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "max_position_embeddings": 256, "sliding_window": 8, "query_pre_attn_scalar": 16,
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "tie_word_embeddings": True,
    },
    "gemma3": {  # Gemma 2's block plus per-head q/k norms; one global layer among sliding ones
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 160, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "max_position_embeddings": 256, "sliding_window": 8, "query_pre_attn_scalar": 16,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        "tie_word_embeddings": True,
    },
    "phi3-fused": {  # fused qkv_proj and gate_up_proj; head_dim 16 written out
        "architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
        "max_position_embeddings": 256, "original_max_position_embeddings": 256, "tie_word_embeddings": False,
        "pad_token_id": 0,
    },
    "llama31-rope": {  # Llama-3.1's rope scaling (rope_type llama3), GQA
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
        "max_position_embeddings": 1024, "tie_word_embeddings": False, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 128},
    },
    "llama-tied": {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
        "max_position_embeddings": 256, "tie_word_embeddings": True,
    },
}


def write_model_dir(root: Path, name: str, overrides: dict | None = None) -> Path:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    config = {**TINY_CONFIGS[name], **(overrides or {})}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory


def tiny_spec(model: str, **sections) -> dict:
    """A complete, valid spec for a tiny local model; sections override the defaults below, except `runtime`,
    which is merged into them. The tests compute in fp32 unless they say otherwise: `auto` picks bf16 on a CPU
    that multiplies it natively, and a test's tolerance should not depend on the machine it runs on (tests about
    bf16 ask for it and use tolerances made for it)."""
    sections = {**sections, "runtime": {"precision": "fp32", **(sections.get("runtime") or {})}}
    spec = {
        "name": "tiny",
        "source": {"model": model},
        "target": {"heads": 4, "intermediate": 96},
        "prune": {"method": "magnitude"},
        "data": {"eval_fraction": 0.1,
                 "domains": [{"name": "a", "weight": 0.5, "train": ["data/a.jsonl"]},
                             {"name": "b", "weight": 0.5, "train": ["data/b.jsonl"]}]},
    }
    for key, value in sections.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def write_spec(directory: Path, spec: dict | str, name: str = "spec.yaml") -> Path:
    path = directory / name
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
    return path


def tiny_tokenizer(directory: Path, texts: list[str], adds_bos: bool = False):
    """A word-level tokenizer over `texts`, saved and loaded like any Hugging Face tokenizer; `adds_bos`: it puts
    <s> in front of every text it encodes (as Gemma's and Llama 2's do)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
    if adds_bos:
        tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                                 special_tokens=[("<s>", tokenizer.token_to_id("<s>"))])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>",
                                      eos_token="</s>")
    wrapped.save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def write_jsonl(path: Path, texts: list[str], field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({field: t}) + "\n" for t in texts))
    return path


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def tiny_project(tmp_path: Path, name: str, spec_changes: dict, domains: dict[str, list[str]] | None = None,
                 adds_bos: bool = False) -> Path:
    """A tiny model saved to a local directory, a tokenizer (putting BOS in front of a text when `adds_bos`),
    data and a compiled plan.json; returns its path."""
    import torch
    from transformers import AutoModelForCausalLM

    from shearc.compiler.compile import compile_spec, write_plan
    from shearc.compiler.source import hf_config

    torch.manual_seed(0)
    model_dir = tmp_path / name
    AutoModelForCausalLM.from_config(hf_config(TINY_CONFIGS[name])).save_pretrained(model_dir)
    # Its own directory: beside a Qwen2 config.json, AutoTokenizer would pick Qwen2's class for it.
    tiny_tokenizer(tmp_path / "tokenizer", [" ".join(WORDS)], adds_bos=adds_bos)
    domains = domains or {domain: [" ".join(WORDS[(i * offset + j) % 10] for j in range(20)) for i in range(30)]
                          for domain, offset in (("a", 0), ("b", 3))}
    for domain, texts in domains.items():
        write_jsonl(tmp_path / "data" / f"{domain}.jsonl", texts)
    spec = tiny_spec(name, **{"eval": {"enabled": False}, **spec_changes})  # evaluation only where asked
    spec["data"]["domains"] = [{"name": d, "weight": round(1 / len(domains), 6), "train": [f"data/{d}.jsonl"]}
                               for d in domains]
    spec["data"]["domains"][0]["weight"] += 1 - sum(d["weight"] for d in spec["data"]["domains"])
    spec["data"]["tokenizer"] = "tokenizer"
    plan_path = tmp_path / "plan.json"
    write_plan(compile_spec(write_spec(tmp_path, spec), plan_path), plan_path)
    return plan_path


def off_by_one(kept, shape):
    """A slicing bug on purpose: every layer keeps the intermediate channel next to the right one."""
    from dataclasses import replace

    return replace(kept, intermediate={layer: (c + 1) % shape.intermediate for layer, c in kept.intermediate.items()})


def data_plan(*domains: dict, eval_fraction: float = 0.0, text_field: str = "text", window_bos: int | None = None):
    """A plan's `data` section for the runtime's data loading: each domain's name, train and eval files."""
    from shearc.plan import DataPlan

    nothing = {"files": 0, "bytes": 0}
    return DataPlan(tokenizer="tokenizer", text_field=text_field, eval_fraction=eval_fraction, window_bos=window_bos,
                    window_bos_origin="tokenizer", domains=[
        {"weight": 1 / len(domains), "reference_loss": None, "train_found": nothing, "eval_found": nothing, **domain}
        for domain in domains])
