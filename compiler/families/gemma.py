"""Gemma 2 and Gemma 3 text models: the Llama projections with four norms per block, norms computing
x * (1 + w), the embedding scaled by sqrt(hidden) inside the model, and tied embeddings.

What differs from Llama, and where shearc handles it:
- Each sublayer's output passes its own norm (post_attention_layernorm, post_feedforward_layernorm)
  before the residual add, so those norms are the layer sites a layer mask multiplies.
- The (1 + w) norms fold a mask as (1 + w) * m - 1 (`norm_offset`).
- sqrt(hidden) is computed from the config: slicing folds the change into the embedding and, tied,
  its inverse into the final norm (`scales_embedding_by_sqrt_hidden`; runtime/slicing.py).
- Sliding-window layers alternate with global ones (`layer_types`): the kept layers keep theirs.
- Logit soft-capping (final and, in Gemma 2, attention) acts on quantities pruning leaves equal.
- Gemma 3 also normalises each query and key head (q_norm, k_norm over head_dim, like Qwen3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ADAPTERS, Axes
from .llama import LLAMA_BLOCK, LlamaFamilyAdapter

GEMMA_NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
               "post_feedforward_layernorm")
GEMMA2_BLOCK: dict[str, Axes] = {**LLAMA_BLOCK, "pre_feedforward_layernorm.weight": ("hidden",),
                                 "post_feedforward_layernorm.weight": ("hidden",)}
GEMMA3_BLOCK: dict[str, Axes] = {**GEMMA2_BLOCK, "self_attn.q_norm.weight": ("head_dim",),
                                 "self_attn.k_norm.weight": ("head_dim",)}


@dataclass(frozen=True)
class GemmaAdapter(LlamaFamilyAdapter):
    block: dict[str, Axes] = field(default_factory=lambda: dict(GEMMA2_BLOCK))
    block_hidden_outputs: tuple[str, ...] = (*GEMMA_NORMS, "self_attn.o_proj", "mlp.down_proj")
    layer_sites: tuple[str, ...] = ("post_attention_layernorm", "post_feedforward_layernorm")
    block_norms: tuple[str, ...] = GEMMA_NORMS
    norm_offset: float = 1.0
    scales_embedding_by_sqrt_hidden: bool = True


ADAPTERS.register("Gemma2ForCausalLM")(GemmaAdapter(architecture="Gemma2ForCausalLM"))
ADAPTERS.register("Gemma3ForCausalLM")(GemmaAdapter(architecture="Gemma3ForCausalLM",
                                                    block=dict(GEMMA3_BLOCK)))
