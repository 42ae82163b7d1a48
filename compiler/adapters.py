"""Architecture adapters: how one decoder block of a transformers model is laid out.

An adapter names, for every parameter of a block and of the model around it, the
symbolic extent of each axis (`hidden`, `attn` = heads x head_dim, `kv` =
kv_heads x head_dim, `inter`, `vocab`). The dependency graph, the parameter
count and the target config are all derived from that description, so a new
architecture is a new adapter, not new special cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shearc.errors import UserError

from .registry import Registry

Axes = tuple[str, ...]


@dataclass(frozen=True)
class Shape:
    """The prunable dimensions of a Llama-family decoder."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    head_dim: int

    @property
    def group_size(self) -> int:
        return self.heads // self.kv_heads

    def extent(self, symbol: str, vocab: int) -> int:
        return {
            "hidden": self.hidden,
            "attn": self.heads * self.head_dim,
            "kv": self.kv_heads * self.head_dim,
            "inter": self.intermediate,
            "vocab": vocab,
        }[symbol]

    def as_dict(self) -> dict[str, int]:
        return {
            "layers": self.layers,
            "hidden": self.hidden,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "intermediate": self.intermediate,
            "head_dim": self.head_dim,
        }


@dataclass(frozen=True)
class LlamaFamilyAdapter:
    """Llama, Mistral and Qwen2 share one block layout; biases are read off the real module."""

    architecture: str
    layer_prefix: str = "model.layers"
    # parameter name inside a block -> axis symbols (weight rows first, as nn.Linear stores them)
    block: dict[str, Axes] = field(default_factory=lambda: {
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
    })
    outer: dict[str, Axes] = field(default_factory=lambda: {
        "model.embed_tokens.weight": ("vocab", "hidden"),
        "model.norm.weight": ("hidden",),
        "lm_head.weight": ("vocab", "hidden"),
    })

    # Where each mask multiplies an activation. A mask on a module's output folds into all
    # its parameters along the masked axis; a mask on its input folds into its weight's input
    # axis. Block modules are relative to a layer; the others are model paths.
    hidden_outputs: tuple[str, ...] = ("model.embed_tokens", "model.norm")  # the residual stream's writers
    block_hidden_outputs: tuple[str, ...] = (
        "input_layernorm", "post_attention_layernorm", "self_attn.o_proj", "mlp.down_proj",
    )
    layer_sites: tuple[str, ...] = ("self_attn.o_proj", "mlp.down_proj")  # outputs added to the residual
    head_site: str = "self_attn.o_proj"  # its input holds the heads' contexts, head after head
    intermediate_site: str = "mlp.down_proj"  # its input is the gated activation
    # RMSNorms average over every hidden channel; with channels masked to 0 the result must
    # average over the kept ones only (as the sliced model will), so their input is rescaled.
    final_norm: str = "model.norm"
    embedding: str = "model.embed_tokens.weight"
    output_head: str = "lm_head.weight"  # the same tensor as `embedding` when tied
    block_norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")

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
        """The source's config.json with the target shape written in (head_dim explicit)."""
        config = dict(source_config)
        config.update(
            num_hidden_layers=shape.layers,
            hidden_size=shape.hidden,
            num_attention_heads=shape.heads,
            num_key_value_heads=shape.kv_heads,
            intermediate_size=shape.intermediate,
            head_dim=shape.head_dim,
        )
        # Per-layer settings must follow the new depth.
        if isinstance(config.get("layer_types"), list):
            config["layer_types"] = config["layer_types"][: shape.layers]
        if isinstance(config.get("max_window_layers"), int):
            config["max_window_layers"] = min(config["max_window_layers"], shape.layers)
        return config


ADAPTERS: Registry[LlamaFamilyAdapter] = Registry("architecture")
for _name in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"):
    ADAPTERS.register(_name)(LlamaFamilyAdapter(architecture=_name))


def adapter_for(config: dict[str, Any]) -> LlamaFamilyAdapter:
    architectures = config.get("architectures") or []
    for name in architectures:
        if name in ADAPTERS:
            return ADAPTERS.get(name)
    found = ", ".join(architectures) or f"none (model_type {config.get('model_type')!r})"
    raise UserError(
        f"unsupported architecture {found}; shearc supports: {', '.join(ADAPTERS.names())}",
        title="unsupported source model",
    )
