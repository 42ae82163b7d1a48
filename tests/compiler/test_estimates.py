from dataclasses import replace

import pytest

from shearc.compiler import estimates as est
from shearc.compiler.source import introspect, read_config
from shearc.compiler.spec import Spec

from ..helpers import SPECS, tiny_spec


@pytest.fixture(scope="module")
def llama7b():
    path = SPECS / "models" / "llama-2-7b.json"
    return introspect(read_config(path), "card", path)


def _spec(**sections):
    return Spec.model_validate(tiny_spec("x", **sections))


def test_forward_flops_are_two_per_weight_plus_attention(llama7b):
    shape = llama7b.shape
    # every Linear weight including lm_head; not the embedding lookup, not the norms
    linear = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 32000 * 4096
    assert est.matmul_params(llama7b, shape) == linear
    assert est.forward_flops_per_token(llama7b, shape, 4096) == 2 * linear + 2 * 32 * 4096 * 32 * 128
    assert est.forward_flops_per_token(llama7b, shape, 1) < est.forward_flops_per_token(llama7b, shape, 2048)


def test_fsdp_shards_states_and_checkpointing_shrinks_activations(llama7b):
    params = 6_738_415_616
    plain = est.training_memory(llama7b, llama7b.shape, _spec(), 4096, trained=params, frozen=0, masked=False)
    assert (plain.weights, plain.grads, plain.optimizer) == (4 * params, 4 * params, 8 * params)
    sharded = est.training_memory(llama7b, llama7b.shape, _spec(runtime={"devices": 8, "strategy": "fsdp2"}), 4096,
                                  trained=params, frozen=0, masked=False)
    assert sharded.optimizer == plain.optimizer // 8 and sharded.activations == plain.activations
    checkpointed = est.training_memory(llama7b, llama7b.shape, _spec(schedule={"activation_checkpointing": True}),
                                       4096, trained=params, frozen=0, masked=False)
    assert checkpointed.activations < plain.activations / 5
    masked = est.training_memory(llama7b, llama7b.shape, _spec(), 4096, trained=params, frozen=0, masked=True)
    assert masked.activations > plain.activations


def test_bf16_on_gpu_halves_activation_bytes(llama7b):
    fp32 = est.activation_bytes_per_token(llama7b, llama7b.shape, _spec(runtime={"device": "cpu"}), masked=False)
    bf16 = est.activation_bytes_per_token(llama7b, llama7b.shape, _spec(runtime={"precision": "bf16"}), masked=False)
    logits = 32000 * 8  # fp32 upcast and its gradient stay in fp32
    assert fp32 - logits - 32000 * 4 == 2 * (bf16 - logits - 32000 * 2)


def test_lora_parameters(llama7b):
    shape = replace(llama7b.shape, heads=16, kv_heads=16, hidden=2048, intermediate=5504, layers=24)
    per_layer = 8 * ((2048 + 2048) * 4 + (2048 + 5504) * 3)
    assert est.lora_params(shape, 8, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                      "down_proj"]) == 24 * per_layer


def test_mask_count(llama7b):
    assert est.mask_units(llama7b, {"layer", "hidden"}) == 32 + 2 + 4096 + 2
