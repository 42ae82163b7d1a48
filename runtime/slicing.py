"""Fold the kept mask values into the weights and slice every coupled tensor to the target shape.

Works on state dicts, driven by the adapter's axis symbols: a parameter axis marked
`hidden` is indexed by the kept hidden channels, `attn` by the kept query heads'
channels, `kv` by the kept KV groups' channels, `inter` by the layer's kept
intermediate channels; layers with a zero layer mask are dropped and the rest renumbered.
The result loads strictly into a standard model of the target config.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch

from shearc.compiler.families import FamilyAdapter, Shape


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


def kept_layers(masks: dict[str, torch.Tensor], layers: int) -> list[int]:
    """The indices of the layers the masks keep, in order."""
    return _nonzero(masks.get("layer"), layers).tolist()


def kept_units(masks: dict[str, torch.Tensor], shape: Shape) -> Kept:
    """What survives; raises ValueError unless every layer ends with the same shape."""
    layers = kept_layers(masks, shape.layers)
    if not layers:
        raise ValueError("the layer mask removes every layer")
    hidden = _nonzero(masks.get("hidden"), shape.hidden)
    head_mask = masks.get("query_head")
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
    """Multiply `tensor` along its `symbol` axis (if it has one) by `values`, in fp32, keeping its dtype."""
    if symbol not in axes:
        return tensor
    axis = axes.index(symbol)
    view = [1] * tensor.dim()
    view[axis] = -1
    return (tensor.float() * values.float().to(tensor.device).reshape(view)).to(tensor.dtype)


Scaling = tuple[tuple[str, ...], str, torch.Tensor]  # the parameter's axes, the axis symbol, the mask values


def embedding_scale_change(hidden: int, kept: int, dtype: torch.dtype) -> float:
    """What the embedding must be multiplied by so that a model scaling it by sqrt(kept) computes what one
    scaling it by sqrt(hidden) did: each factor as the model applies it, rounded to the weights' dtype."""
    def applied(width: int) -> float:
        return float(torch.tensor(math.sqrt(width)).to(dtype))

    return applied(hidden) / applied(kept)


def fold_scalings(state_keys: set[str], adapter: FamilyAdapter, masks: dict[str, torch.Tensor], shape: Shape,
                  *, tied: bool, embedding_dtype: torch.dtype = torch.float32) -> dict[str, list[Scaling]]:
    """Per parameter, the mask values to multiply in so that, unmasked, it computes what the masked model computes.

    The hidden mask on the final norm's output is folded exactly once: into the final norm,
    or, with tied embeddings, already into the output head's input columns by the embedding
    (the reference applies it twice).
    """
    scalings: dict[str, list[Scaling]] = {}

    def apply(module: str, axes_of: dict[str, tuple[str, ...]], key_prefix: str, symbol: str,
              values: torch.Tensor) -> None:
        for name, axes in axes_of.items():
            key = f"{key_prefix}{name}"
            if name.rsplit(".", 1)[0] == module and key in state_keys:
                scalings.setdefault(key, []).append((axes, symbol, values))

    hidden = masks.get("hidden")
    if hidden is not None:
        for module in adapter.hidden_outputs:
            if not (tied and module == adapter.final_norm):
                apply(module, adapter.outer, "", "hidden", hidden)
        if adapter.scales_embedding_by_sqrt_hidden:  # the sliced model scales by sqrt(kept), the source by sqrt(d)
            change = embedding_scale_change(hidden.numel(), int(torch.count_nonzero(hidden)), embedding_dtype)
            factor = torch.full_like(hidden, change, dtype=torch.float32)
            apply(adapter.embedding.rsplit(".", 1)[0], adapter.outer, "", "hidden", factor)
            if tied:  # the output head reads the same weight: the final norm's output takes the inverse
                apply(adapter.final_norm, adapter.outer, "", "hidden", 1 / factor)
    for layer in range(shape.layers):
        prefix = f"{adapter.layer_prefix}.{layer}."
        if hidden is not None:
            for module in adapter.block_hidden_outputs:
                apply(module, adapter.block, prefix, "hidden", hidden)
        if "layer" in masks:
            for module in adapter.layer_sites:
                apply(module, adapter.block, prefix, "hidden", masks["layer"][layer].expand(shape.hidden))
        if "query_head" in masks:  # on o_proj's input: only its weight has an `attn` axis
            apply(adapter.head_site, adapter.block, prefix, "attn",
                  masks["query_head"][layer].repeat_interleave(shape.head_dim))
        if "intermediate" in masks:  # on down_proj's input: only its weight has an `inter` axis
            apply(adapter.intermediate_site, adapter.block, prefix, "inter", masks["intermediate"][layer])
    return scalings


def _indices(key: str, adapter: FamilyAdapter, kept: Kept, head_dim: int
             ) -> tuple[str, tuple[str, ...], dict[str, torch.Tensor]] | None:
    """A parameter's renumbered name, its axes' symbols and the kept units' channels per symbol; None for a dropped
    layer's."""
    if key.startswith(adapter.layer_prefix + "."):
        layer_text, name = key[len(adapter.layer_prefix) + 1:].split(".", 1)
        layer = int(layer_text)
        if layer not in kept.layers:
            return None
        index = {"hidden": kept.hidden, "attn": _channels(kept.heads[layer], head_dim),
                 "kv": _channels(kept.kv_groups[layer], head_dim), "inter": kept.intermediate[layer]}
        return f"{adapter.layer_prefix}.{kept.layers.index(layer)}.{name}", adapter.block[name], index
    return key, adapter.outer[key], {"hidden": kept.hidden}


def slice_tensor(key: str, tensor: torch.Tensor, adapter: FamilyAdapter, kept: Kept, head_dim: int
                 ) -> tuple[str, torch.Tensor] | None:
    """The tensor cut to the kept units, under its renumbered name; None for a dropped layer's. An axis that keeps
    every channel in order is not copied."""
    found = _indices(key, adapter, kept, head_dim)
    if found is None:
        return None
    key, axes, index = found
    for axis, symbol in enumerate(axes):
        if symbol in index and not _all_in_order(index[symbol], tensor.shape[axis]):
            tensor = tensor.index_select(axis, index[symbol].to(tensor.device))
    return key, tensor.contiguous()


def _all_in_order(index: torch.Tensor, size: int) -> bool:
    return len(index) == size and bool((index.cpu() == torch.arange(size)).all())


PERMUTE_BLOCK_BYTES = 2**22  # what permuting a tensor in place copies at a time


@torch.no_grad()
def permute_tensor_(key: str, tensor: torch.Tensor, adapter: FamilyAdapter, permutation: Kept, shape: Shape
                    ) -> torch.Tensor:
    """slice_parameter for a `permutation` (every unit kept, in another order), in place: the channels are reordered
    a block of rows (or columns) at a time, so the memory beyond the tensor is PERMUTE_BLOCK_BYTES, not a second
    copy of it (a model's largest tensor, the embedding, is streamed through this for the finalize check)."""
    for part_key, part in adapter.split_fused({key: tensor}, shape).items():  # views of `tensor`
        _, axes, index = _indices(part_key, adapter, permutation, shape.head_dim)
        for axis, symbol in enumerate(axes):
            if symbol in index:
                _reorder_(part, axis, index[symbol].to(part.device))
    return tensor


def _reorder_(tensor: torch.Tensor, axis: int, order: torch.Tensor) -> None:
    if tensor.dim() == 1:
        tensor.copy_(tensor[order])
        return
    other = 1 - axis if tensor.dim() == 2 else None
    if other is None:
        raise ValueError(f"cannot permute a {tensor.dim()}-D tensor in place")
    step = max(1, PERMUTE_BLOCK_BYTES // max(1, tensor.shape[axis] * tensor.element_size()))
    for start in range(0, tensor.shape[other], step):
        block = tensor.narrow(other, start, min(step, tensor.shape[other] - start))
        block.copy_(block.index_select(axis, order))


def slice_parameter(key: str, tensor: torch.Tensor, adapter: FamilyAdapter, kept: Kept, shape: Shape
                    ) -> tuple[str, torch.Tensor] | None:
    """slice_tensor for any parameter of a model at `shape`, a fused one part by part."""
    cut = {}
    for part_key, part in adapter.split_fused({key: tensor}, shape).items():
        item = slice_tensor(part_key, part, adapter, kept, shape.head_dim)
        if item is None:
            return None
        cut[item[0]] = item[1]
    ((joined_key, joined),) = adapter.join_fused(cut).items()
    return joined_key, joined


def _is_norm(key: str, adapter: FamilyAdapter) -> bool:
    module = key.rsplit(".", 1)[0]
    if module.startswith(adapter.layer_prefix + "."):
        module = module[len(adapter.layer_prefix) + 1:].split(".", 1)[1]
        return module in adapter.block_norms
    return module == adapter.final_norm


def part_keys(keys: Iterable[str], adapter: FamilyAdapter) -> set[str]:
    """`keys` with each fused parameter's name replaced by its parts' (the names fold_scalings gives)."""
    parts = set()
    for key in keys:
        located = adapter.block_name(key)
        if located is not None and located[1] in adapter.fused:
            parts.update(located[0] + part for part in adapter.fused[located[1]])
        else:
            parts.add(key)
    return parts


def dense_tensors(state: Mapping[str, torch.Tensor], adapter: FamilyAdapter, masks: dict[str, torch.Tensor],
                  shape: Shape, *, tied: bool) -> Iterator[tuple[str, torch.Tensor]]:
    """The dense model's weights, one at a time, in fp32 whatever the source is held in: a half-precision source's
    values are fp32 values, so the folds (norms computing x * (1 + w), Gemma's embedding scale) are exact, and the
    finalize check (in fp32) sees the slice alone, not bf16 rounding of the folded products (0.58 logits on Gemma 3
    270M; export casts to the export dtype). `state` is read one key at a time (a lazy mapping may gather or load
    each on demand), so the memory beyond it is one source tensor and its result, whatever the model's size. A
    tensor no mask cuts or scales is the source's own, not a copy (an fp32 source's embedding when hidden channels
    stay). With `tied`, the output head is not yielded: it is the embedding's."""
    kept = kept_units(masks, shape)
    scalings = fold_scalings(part_keys(state.keys(), adapter), adapter, masks, shape, tied=tied,
                             embedding_dtype=state[adapter.embedding].dtype)
    for key in state:
        if tied and key == adapter.output_head:
            continue
        cut = {}
        for part_key, tensor in adapter.split_fused({key: state[key]}, shape).items():  # fused: part by part
            tensor = tensor.detach().float()
            offset = adapter.norm_offset if _is_norm(part_key, adapter) else 0.0
            for axes, symbol, values in scalings.get(part_key, []):  # a norm computing x * (offset + w) scales
                tensor = _scale(tensor + offset, axes, symbol, values) - offset if offset else \
                    _scale(tensor, axes, symbol, values)  # offset + w
            item = slice_tensor(part_key, tensor, adapter, kept, shape.head_dim)
            if item is None:  # a dropped layer's
                break
            cut[item[0]] = item[1]
        else:
            yield from adapter.join_fused(cut).items()


def finalize_state(state: Mapping[str, torch.Tensor], adapter: FamilyAdapter, masks: dict[str, torch.Tensor],
                   shape: Shape, *, tied: bool) -> tuple[dict[str, torch.Tensor], Shape]:
    """dense_tensors gathered in a state dict (with the tied output head), and the shape the masks reach. Some of
    its tensors may share the source's storage (dense_tensors): copy them before changing either in place."""
    out = dict(dense_tensors(state, adapter, masks, shape, tied=tied))
    if tied:
        out[adapter.output_head] = out[adapter.embedding]
    return out, kept_units(masks, shape).shape
