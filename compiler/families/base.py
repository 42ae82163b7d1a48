"""What a model family's adapter says about its architecture, and the registry of adapters.

An adapter names, for every parameter of a decoder block and of the model around it, the
symbolic extent of each axis (`hidden`, `attn` = heads x head_dim, `kv` = kv_heads x head_dim,
`inter`; and two no unit prunes: `head_dim`, one head's width, and `vocab`), where each mask
multiplies an activation, how its norms and embeddings compute, which projections LoRA adapts,
and how many parameters a shape has. The dependency graph, the parameter counts (exact at
compile time, expected under hard-concrete masks), the folding and slicing and the target config
all derive from that description: a new family is one module (see docs/EXTENDING.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shearc.registry import Registry

Axes = tuple[str, ...]


@dataclass(frozen=True)
class Shape:
    """The prunable dimensions of a decoder."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    head_dim: int

    @property
    def group_size(self) -> int:
        return self.heads // self.kv_heads

    def extents(self, vocab: int) -> dict[str, int]:
        """Axis symbol -> its length at this shape."""
        return {"hidden": self.hidden, "attn": self.heads * self.head_dim, "kv": self.kv_heads * self.head_dim,
                "inter": self.intermediate, "head_dim": self.head_dim, "vocab": vocab}

    def extent(self, symbol: str, vocab: int) -> int:
        return self.extents(vocab)[symbol]

    def expected_extents(self, hidden: Any, kv_heads: Any, intermediate: Any) -> dict[str, Any]:
        """Extents at expected widths under hard-concrete masks (numbers, or tensors of one value per layer): heads
        are kept KV groups x this shape's group size, so under GQA k and v count KV heads, not query heads."""
        return {"hidden": hidden, "attn": kv_heads * self.group_size * self.head_dim, "kv": kv_heads * self.head_dim,
                "inter": intermediate, "head_dim": self.head_dim}

    def as_dict(self) -> dict[str, int]:
        return {"layers": self.layers, "hidden": self.hidden, "heads": self.heads, "kv_heads": self.kv_heads,
                "intermediate": self.intermediate, "head_dim": self.head_dim}


@dataclass(frozen=True)
class FamilyAdapter:
    """One architecture of a family. Fields describe the layout; methods read configs and count."""

    architecture: str
    layer_prefix: str
    block: dict[str, Axes]  # parameter name inside a block -> axis symbols (weight rows first, as nn.Linear)
    outer: dict[str, Axes]  # parameters outside the blocks, by full name
    # Where each mask multiplies an activation. A mask on a module's output folds into all its
    # parameters along the masked axis; a mask on its input folds into its weight's input axis.
    hidden_outputs: tuple[str, ...]  # model modules writing the residual stream (embedding, final norm)
    block_hidden_outputs: tuple[str, ...]  # block modules whose output is hidden-wide
    layer_sites: tuple[str, ...]  # block outputs added to the residual: the layer mask multiplies them
    head_site: str  # its input holds the heads' contexts, head after head
    intermediate_site: str  # its input is the gated activation
    final_norm: str
    block_norms: tuple[str, ...]  # RMSNorms inside a block: under a hidden mask they average over the kept channels
    embedding: str  # the token embedding's weight
    output_head: str  # the same tensor as `embedding` when tied
    lora_targets: dict[str, tuple[str, str]]  # module name LoRA may adapt -> (input symbol, output symbol)
    # An RMSNorm computes x * (norm_offset + w): 0 for Llama, 1 for Gemma's (1 + w). A hidden mask m
    # folds into such a weight as (norm_offset + w) * m - norm_offset.
    norm_offset: float = 0.0
    # Gemma multiplies the embedding's output by sqrt(hidden) inside the model: a smaller hidden size
    # changes that factor, so slicing folds sqrt(source hidden / kept hidden) into the embedding (and,
    # tied, its inverse into the final norm, so the output head is unchanged).
    scales_embedding_by_sqrt_hidden: bool = False
    # A block parameter stored as several projections concatenated along its rows (Phi-3's qkv_proj,
    # gate_up_proj) -> its parts, in order, each described in `block` under "<name>[<part>]". The graph,
    # counts, scores and slicing see the parts; split_fused and join_fused convert at the edges.
    fused: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Whether the family's usual tokenizer puts BOS in front of a text (Llama 2 and 3, Mistral, Gemma do;
    # Qwen and Phi-3 do not): how windows begin when compile finds no tokenizer (compiler/window_start.py).
    text_begins_with_bos: bool = True

    @property
    def norms(self) -> tuple[str, ...]:
        return (self.final_norm, *self.block_norms)

    def shape_of(self, config: Any) -> Shape:
        """The prunable dimensions of a transformers config object."""
        raise NotImplementedError

    def config_for(self, source_config: dict[str, Any], shape: Shape) -> dict[str, Any]:
        """The source's config.json with `shape` written in: a standard config of the architecture."""
        raise NotImplementedError

    def parameter_count(self, block: dict[str, Axes], outer: dict[str, Axes], extents: dict[str, Any],
                        layers: Any) -> Any:
        """Parameters of the `block` and `outer` tensors present (as found on the real module), at `extents`
        (axis symbol -> length). Integer extents and `layers` give the exact count; tensors give the expected
        count under hard-concrete masks: block extents per layer [L], `layers` the layers' keep values [L]."""
        def numel(axes: Axes) -> Any:
            return math.prod(extents[symbol] for symbol in axes)

        per_layer = sum(numel(axes) for axes in block.values())
        around = sum(numel(axes) for axes in outer.values())
        if isinstance(layers, int):
            return around + layers * per_layer
        return around + (layers * per_layer).sum()

    def lora_in_out(self, shape: Shape, module: str) -> tuple[int, int]:
        """Input and output features of a projection LoRA adapts, at `shape` (a fused output: its parts' sum,
        written "attn+kv+kv")."""
        extents = shape.extents(0)
        inputs, outputs = self.lora_targets[module]
        return extents[inputs], sum(extents[symbol] for symbol in outputs.split("+"))

    def block_name(self, key: str) -> tuple[str, str] | None:
        """A full parameter name -> (its layer's prefix, its name inside the block); None outside the blocks."""
        if not key.startswith(self.layer_prefix + "."):
            return None
        layer, name = key[len(self.layer_prefix) + 1:].split(".", 1)
        return f"{self.layer_prefix}.{layer}.", name

    def part_rows(self, name: str, shape: Shape) -> list[tuple[str, int]]:
        """A fused block parameter's parts, with the rows each takes at `shape`."""
        return [(part, shape.extent(self.block[part][0], 0)) for part in self.fused[name]]

    def split_fused(self, tensors: dict[str, Any], shape: Shape) -> dict[str, Any]:
        """Tensors by full parameter name, each fused one replaced by its parts (rows cut at `shape`)."""
        if not self.fused:
            return tensors
        split = {}
        for key, tensor in tensors.items():
            located = self.block_name(key)
            if located is None or located[1] not in self.fused:
                split[key] = tensor
                continue
            parts = self.part_rows(located[1], shape)
            for (part, _), piece in zip(parts, tensor.split([rows for _, rows in parts]), strict=True):
                split[located[0] + part] = piece
        return split

    def join_fused(self, tensors: dict[str, Any]) -> dict[str, Any]:
        """The inverse of split_fused: the parts of each fused parameter concatenated back, in order."""
        if not self.fused:
            return tensors
        import torch

        joined, parts_of = {}, {part: name for name, parts in self.fused.items() for part in parts}
        for key, tensor in tensors.items():
            located = self.block_name(key)
            if located is None or located[1] not in parts_of:
                joined[key] = tensor
                continue
            name = parts_of[located[1]]
            if located[0] + name not in joined:
                joined[located[0] + name] = torch.cat([tensors[located[0] + part] for part in self.fused[name]])
        return joined


ADAPTERS: Registry[FamilyAdapter] = Registry("architecture")

# Config entries with one value per layer (Gemma's and Qwen's sliding or full attention per layer).
PER_LAYER_SETTINGS = ("layer_types",)


def follow_kept_layers(config: dict[str, Any], source_config: dict[str, Any], kept: Sequence[int]) -> dict[str, Any]:
    """`config` with each per-layer setting of the source taken at the kept layers' indices: read from the
    transformers config, which derives them when config.json leaves them implicit (Gemma 2 alternates by index),
    and written out, so the smaller model does not re-derive them for its own depth. Qwen2's max_window_layers
    (sliding windows from that layer on) is counted over the kept layers."""
    from shearc.compiler.source import hf_config  # source.py imports this package

    derived = hf_config(source_config)
    config = dict(config)
    for key in PER_LAYER_SETTINGS:
        values = getattr(derived, key, None)
        if isinstance(values, list):
            config[key] = [values[index] for index in kept]
    if isinstance(source_config.get("max_window_layers"), int):
        config["max_window_layers"] = sum(index < source_config["max_window_layers"] for index in kept)
    return config
