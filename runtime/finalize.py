"""Fold the kept mask values into the weights and slice every coupled tensor to the target shape.

Works on state dicts, driven by the adapter's axis symbols: a parameter axis marked
`hidden` is indexed by the kept hidden channels, `attn` by the kept query heads'
channels, `kv` by the kept KV groups' channels, `inter` by the layer's kept
intermediate channels; layers with a zero layer mask are dropped and the rest renumbered.
The result loads strictly into a standard model of the target config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shearc.compiler.adapters import LlamaFamilyAdapter, Shape


@dataclass(frozen=True)
class Kept:
    layers: list[int]
    hidden: torch.Tensor
    heads: dict[int, torch.Tensor]  # layer -> kept query heads
    kv_groups: dict[int, torch.Tensor]  # layer -> kept KV groups
    intermediate: dict[int, torch.Tensor]  # layer -> kept intermediate channels
    shape: Shape


def _nonzero(values: torch.Tensor | None, size: int) -> torch.Tensor:
    return torch.arange(size) if values is None else torch.nonzero(values).flatten().cpu()


def _uniform(counts: dict[int, int], what: str) -> int:
    distinct = set(counts.values())
    if len(distinct) != 1:
        raise ValueError(f"masks keep different numbers of {what} per layer: {counts}; layers must share one shape")
    return distinct.pop()


def kept_units(masks: dict[str, torch.Tensor], shape: Shape) -> Kept:
    """What survives; raises ValueError unless every layer ends with the same shape."""
    layers = _nonzero(masks.get("layer"), shape.layers).tolist()
    if not layers:
        raise ValueError("the layer mask removes every layer")
    hidden = _nonzero(masks.get("hidden"), shape.hidden)
    head_mask = masks.get("head")
    heads, groups, inter = {}, {}, {}
    for layer in layers:
        heads[layer] = _nonzero(None if head_mask is None else head_mask[layer], shape.heads)
        group_of = heads[layer] // shape.group_size
        groups[layer] = torch.unique(group_of)
        per_group = torch.bincount(group_of, minlength=shape.kv_heads)[groups[layer]]
        if len(set(per_group.tolist())) != 1:
            raise ValueError(f"layer {layer} keeps {per_group.tolist()} query heads in its KV groups; "
                             "every kept group must keep the same number")
        inter[layer] = _nonzero(None if "intermediate" not in masks else masks["intermediate"][layer],
                                shape.intermediate)
    target = Shape(
        layers=len(layers),
        hidden=len(hidden),
        heads=_uniform({lay: len(h) for lay, h in heads.items()}, "heads"),
        kv_heads=_uniform({lay: len(g) for lay, g in groups.items()}, "KV groups"),
        intermediate=_uniform({lay: len(i) for lay, i in inter.items()}, "intermediate channels"),
        head_dim=shape.head_dim,
    )
    return Kept(layers, hidden, heads, groups, inter, target)


def _channels(units: torch.Tensor, width: int) -> torch.Tensor:
    return (units[:, None] * width + torch.arange(width)).flatten()


def _scale(tensor: torch.Tensor, axes: tuple[str, ...], symbol: str, values: torch.Tensor) -> torch.Tensor:
    """Multiply `tensor` along its `symbol` axis (if it has one) by `values`."""
    if symbol not in axes:
        return tensor
    axis = axes.index(symbol)
    view = [1] * tensor.dim()
    view[axis] = -1
    return tensor * values.to(tensor.dtype).reshape(view)


def fold(state: dict[str, torch.Tensor], adapter: LlamaFamilyAdapter, masks: dict[str, torch.Tensor],
         shape: Shape, *, tied: bool) -> dict[str, torch.Tensor]:
    """Weights that compute, unmasked, what the masked model computes with these mask values.

    The hidden mask on the final norm's output is folded exactly once: into the final norm,
    or, with tied embeddings, already into the output head's input columns by the embedding
    (the reference applies it twice).
    """
    out = dict(state)

    def apply(module: str, axes_of: dict[str, tuple[str, ...]], key_prefix: str, symbol: str,
              values: torch.Tensor) -> None:
        for name, axes in axes_of.items():
            key = f"{key_prefix}{name}"
            if name.rsplit(".", 1)[0] == module and key in out:
                out[key] = _scale(out[key], axes, symbol, values)

    hidden = masks.get("hidden")
    if hidden is not None:
        for module in adapter.hidden_outputs:
            if not (tied and module == adapter.final_norm):
                apply(module, adapter.outer, "", "hidden", hidden)
    for layer in range(shape.layers):
        prefix = f"{adapter.layer_prefix}.{layer}."
        if hidden is not None:
            for module in adapter.block_hidden_outputs:
                apply(module, adapter.block, prefix, "hidden", hidden)
        if "layer" in masks:
            for module in adapter.layer_sites:
                apply(module, adapter.block, prefix, "hidden", masks["layer"][layer].expand(shape.hidden))
        if "head" in masks:  # on o_proj's input: only its weight has an `attn` axis
            apply(adapter.head_site, adapter.block, prefix, "attn",
                  masks["head"][layer].repeat_interleave(shape.head_dim))
        if "intermediate" in masks:  # on down_proj's input: only its weight has an `inter` axis
            apply(adapter.intermediate_site, adapter.block, prefix, "inter", masks["intermediate"][layer])
    if tied:
        out[adapter.output_head] = out[adapter.embedding]
    return out


def slice_state(state: dict[str, torch.Tensor], adapter: LlamaFamilyAdapter, kept: Kept, head_dim: int
                ) -> dict[str, torch.Tensor]:
    """Every tensor cut to the kept units; layers renumbered."""
    out = {}
    for key, tensor in state.items():
        if key.startswith(adapter.layer_prefix + "."):
            layer_text, name = key[len(adapter.layer_prefix) + 1:].split(".", 1)
            layer = int(layer_text)
            if layer not in kept.layers:
                continue
            index = {"hidden": kept.hidden, "attn": _channels(kept.heads[layer], head_dim),
                     "kv": _channels(kept.kv_groups[layer], head_dim), "inter": kept.intermediate[layer]}
            axes = adapter.block[name]
            key = f"{adapter.layer_prefix}.{kept.layers.index(layer)}.{name}"
        else:
            index = {"hidden": kept.hidden}
            axes = adapter.outer[key]
        for axis, symbol in enumerate(axes):
            if symbol in index:
                tensor = tensor.index_select(axis, index[symbol].to(tensor.device))
        out[key] = tensor.contiguous()
    return out


def finalize_state(state: dict[str, torch.Tensor], adapter: LlamaFamilyAdapter, masks: dict[str, torch.Tensor],
                   shape: Shape, *, tied: bool) -> tuple[dict[str, torch.Tensor], Shape]:
    kept = kept_units(masks, shape)
    folded = fold(state, adapter, masks, shape, tied=tied)
    return slice_state(folded, adapter, kept, shape.head_dim), kept.shape
