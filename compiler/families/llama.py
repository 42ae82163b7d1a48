"""The Llama family: Llama, Mistral and Qwen2 share one block layout (q/k/v biases are read off the
real module: present in Qwen2), MHA or GQA, tied or untied embeddings, RMSNorm x * w."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import ADAPTERS, Axes, FamilyAdapter, Shape, follow_kept_layers

# Every projection's weight (rows first, as nn.Linear) and its bias where the checkpoint has one.
LLAMA_BLOCK: dict[str, Axes] = {
    "input_layernorm.weight": ("hidden",),
    "self_attn.q_proj.weight": ("attn", "hidden"),
    "self_attn.q_proj.bias": ("attn",),
    "self_attn.k_proj.weight": ("kv", "hidden"),
    "self_attn.k_proj.bias": ("kv",),
    "self_attn.v_proj.weight": ("kv", "hidden"),
    "self_attn.v_proj.bias": ("kv",),
    "self_attn.o_proj.weight": ("hidden", "attn"),
    "self_attn.o_proj.bias": ("hidden",),
    "post_attention_layernorm.weight": ("hidden",),
    "mlp.gate_proj.weight": ("inter", "hidden"),
    "mlp.gate_proj.bias": ("inter",),
    "mlp.up_proj.weight": ("inter", "hidden"),
    "mlp.up_proj.bias": ("inter",),
    "mlp.down_proj.weight": ("hidden", "inter"),
    "mlp.down_proj.bias": ("hidden",),
}


@dataclass(frozen=True)
class LlamaFamilyAdapter(FamilyAdapter):
    layer_prefix: str = "model.layers"
    block: dict[str, Axes] = field(default_factory=lambda: dict(LLAMA_BLOCK))
    outer: dict[str, Axes] = field(default_factory=lambda: {
        "model.embed_tokens.weight": ("vocab", "hidden"),
        "model.norm.weight": ("hidden",),
        "lm_head.weight": ("vocab", "hidden"),
    })
    hidden_outputs: tuple[str, ...] = ("model.embed_tokens", "model.norm")
    block_hidden_outputs: tuple[str, ...] = (
        "input_layernorm", "post_attention_layernorm", "self_attn.o_proj", "mlp.down_proj",
    )
    layer_sites: tuple[str, ...] = ("self_attn.o_proj", "mlp.down_proj")
    head_site: str = "self_attn.o_proj"
    intermediate_site: str = "mlp.down_proj"
    final_norm: str = "model.norm"
    block_norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")
    embedding: str = "model.embed_tokens.weight"
    output_head: str = "lm_head.weight"
    lora_targets: dict[str, tuple[str, str]] = field(default_factory=lambda: {
        "q_proj": ("hidden", "attn"), "k_proj": ("hidden", "kv"), "v_proj": ("hidden", "kv"),
        "o_proj": ("attn", "hidden"), "gate_proj": ("hidden", "inter"), "up_proj": ("hidden", "inter"),
        "down_proj": ("inter", "hidden"),
    })

    def shape_of(self, config: Any) -> Shape:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return Shape(
            layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            intermediate=config.intermediate_size,
            head_dim=head_dim,
        )

    def config_for(self, source_config: dict[str, Any], shape: Shape) -> dict[str, Any]:
        """head_dim written explicitly; per-layer settings those of the first `shape.layers` layers (the runtime
        puts in those of the layers pruning keeps: RunContext.dense_config)."""
        config = dict(source_config)
        config.update(
            num_hidden_layers=shape.layers,
            hidden_size=shape.hidden,
            num_attention_heads=shape.heads,
            num_key_value_heads=shape.kv_heads,
            intermediate_size=shape.intermediate,
            head_dim=shape.head_dim,
        )
        return follow_kept_layers(config, source_config, range(shape.layers))


for _architecture in ("LlamaForCausalLM", "MistralForCausalLM"):
    ADAPTERS.register(_architecture)(LlamaFamilyAdapter(architecture=_architecture))
ADAPTERS.register("Qwen2ForCausalLM")(LlamaFamilyAdapter(architecture="Qwen2ForCausalLM", text_begins_with_bos=False))
