"""Phi-3: the Llama layout with fused projections. qkv_proj holds the query, key and value rows one
after another; gate_up_proj the gate rows, then the up rows (the MLP computes up * act(gate)).

The adapter describes each fused weight as its parts (`fused`), so the dependency graph, the counts,
the element scores and the slicing see a query, a key, a value, a gate and an up projection: pruning
a KV group takes its rows from the key and value parts and its query heads' rows from the query part,
and an intermediate channel its row from both halves of gate_up_proj. Slicing cuts each part and
joins them again in the same order, so the result is a standard Phi3ForCausalLM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ADAPTERS, Axes
from .llama import LlamaFamilyAdapter

PHI3_BLOCK: dict[str, Axes] = {
    "input_layernorm.weight": ("hidden",),
    "self_attn.qkv_proj.weight[q]": ("attn", "hidden"),
    "self_attn.qkv_proj.weight[k]": ("kv", "hidden"),
    "self_attn.qkv_proj.weight[v]": ("kv", "hidden"),
    "self_attn.o_proj.weight": ("hidden", "attn"),
    "post_attention_layernorm.weight": ("hidden",),
    "mlp.gate_up_proj.weight[gate]": ("inter", "hidden"),
    "mlp.gate_up_proj.weight[up]": ("inter", "hidden"),
    "mlp.down_proj.weight": ("hidden", "inter"),
}
PHI3_FUSED: dict[str, tuple[str, ...]] = {
    "self_attn.qkv_proj.weight": ("self_attn.qkv_proj.weight[q]", "self_attn.qkv_proj.weight[k]",
                                  "self_attn.qkv_proj.weight[v]"),
    "mlp.gate_up_proj.weight": ("mlp.gate_up_proj.weight[gate]", "mlp.gate_up_proj.weight[up]"),
}


@dataclass(frozen=True)
class Phi3Adapter(LlamaFamilyAdapter):
    block: dict[str, Axes] = field(default_factory=lambda: dict(PHI3_BLOCK))
    fused: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(PHI3_FUSED))
    text_begins_with_bos: bool = False  # Phi-3's tokenizer_config sets add_bos_token false
    lora_targets: dict[str, tuple[str, str]] = field(default_factory=lambda: {
        "qkv_proj": ("hidden", "attn+kv+kv"), "o_proj": ("attn", "hidden"), "gate_up_proj": ("hidden", "inter+inter"),
        "down_proj": ("inter", "hidden"),
    })


ADAPTERS.register("Phi3ForCausalLM")(Phi3Adapter(architecture="Phi3ForCausalLM"))
