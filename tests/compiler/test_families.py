"""Family adapters: found by architecture, one parameter count for exact and expected sizes, LoRA's projections."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from shearc.compiler.families import ADAPTERS, Shape, adapter_for
from shearc.compiler.source import hf_config, introspect
from shearc.errors import UserError

from ..helpers import TINY_CONFIGS


def test_an_unknown_architecture_is_refused_naming_the_supported_ones():
    with pytest.raises(UserError, match="unsupported architecture GPT2LMHeadModel; shearc supports: LlamaForCausalLM"):
        adapter_for({"architectures": ["GPT2LMHeadModel"]})
    assert adapter_for(TINY_CONFIGS["qwen2-bias"]) is ADAPTERS.get("Qwen2ForCausalLM")


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_the_parameter_count_is_what_torch_counts_and_takes_expected_widths(name):
    config = TINY_CONFIGS[name]
    source = introspect(config, "local", None)
    model = AutoModelForCausalLM.from_config(hf_config(config))
    assert source.parameter_count(source.shape.extents(source.vocab), source.shape.layers) == \
        sum(p.numel() for p in model.parameters())
    # Expected widths per layer (tensors) at whole numbers give the same count as the integer shape
    shape, layers = source.shape, source.shape.layers
    per_layer = {"hidden": torch.tensor(float(shape.hidden)),
                 "attn": torch.full((layers,), float(shape.heads * shape.head_dim)),
                 "kv": torch.full((layers,), float(shape.kv_heads * shape.head_dim)),
                 "inter": torch.full((layers,), float(shape.intermediate)), "head_dim": shape.head_dim}
    expected = source.parameter_count(per_layer, torch.ones(layers))
    assert float(expected) == sum(p.numel() for p in model.parameters())
    half = source.parameter_count(per_layer, torch.tensor([1.0] * (layers - 1) + [0.0]))
    block = sum(p.numel() for p in model.model.layers[0].parameters())
    assert float(half) == sum(p.numel() for p in model.parameters()) - block  # a layer kept with probability 0


def test_lora_projections_and_their_widths():
    adapter = ADAPTERS.get("MistralForCausalLM")
    shape = Shape(layers=2, hidden=64, heads=8, kv_heads=2, intermediate=192, head_dim=8)
    assert list(adapter.lora_targets) == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                          "down_proj"]
    assert adapter.lora_in_out(shape, "k_proj") == (64, 16) and adapter.lora_in_out(shape, "down_proj") == (192, 64)
