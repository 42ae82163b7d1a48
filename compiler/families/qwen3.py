"""Qwen3: the Llama block plus an RMSNorm over head_dim on every query and key head (q_norm, k_norm).

One weight of head_dim elements serves every head of a layer, so removing heads leaves it whole, and
it never sees the hidden axis: no mask folds into it and nothing slices it. It normalises each head
before rotary embedding, inside what a head mask keeps or removes, so masked and sliced models agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ADAPTERS, Axes
from .llama import LLAMA_BLOCK, LlamaFamilyAdapter

QWEN3_BLOCK: dict[str, Axes] = {**LLAMA_BLOCK, "self_attn.q_norm.weight": ("head_dim",),
                                "self_attn.k_norm.weight": ("head_dim",)}


@dataclass(frozen=True)
class Qwen3Adapter(LlamaFamilyAdapter):
    block: dict[str, Axes] = field(default_factory=lambda: dict(QWEN3_BLOCK))
    text_begins_with_bos: bool = False


ADAPTERS.register("Qwen3ForCausalLM")(Qwen3Adapter(architecture="Qwen3ForCausalLM"))
