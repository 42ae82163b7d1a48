"""Scores of prunable units, gathered along the dependency graph, and the top-k masks they give.

As LLM-Pruner scores a coupled group: each member tensor gives one score per channel (a row or
column of the unit's slice: its element scores summed, |sum| for the signed vector estimator);
the members combine channel by channel (the plan's aggregation); a unit's score is the sum of its
channels'. Under GQA a KV group's query rows (and o_proj columns) hold group-size channels for
each k/v channel; they are summed onto the k/v channel they pair with first. Members whose widths
do not divide (a whole layer's tensors) combine as totals. Selection keeps the same count in
every layer, so the result is a standard config's shape.
"""

from __future__ import annotations

import networkx as nx
import torch

from shearc.compiler.families import Shape

from .scores import aggregate

PER_LAYER_KINDS = ("kv_group", "query_head", "intermediate")


def channel_scores(elements: torch.Tensor, axis: int, count: int, finish: str) -> torch.Tensor:
    """A tensor's element scores -> one per channel along `axis`, as [count units, channels per unit]."""
    per_channel = elements.transpose(0, axis).reshape(elements.shape[axis], -1).sum(1)
    if finish == "abs":
        per_channel = per_channel.abs()
    return per_channel.reshape(count, -1)


def combine_members(members: list[torch.Tensor], aggregation: str) -> torch.Tensor:
    """[count, width] per member -> one score per unit: members aggregated per channel, channels summed."""
    width = min(m.shape[1] for m in members)
    if any(m.shape[1] % width for m in members):  # no channel correspondence: combine the units' totals
        return aggregate([m.sum(1) for m in members], aggregation)
    # fold a wider member (GQA's query rows) onto the channels of the narrowest, block by block within each unit
    aligned = [m.reshape(m.shape[0], m.shape[1] // width, width).sum(1) for m in members]
    return aggregate(aligned, aggregation).sum(1)


def unit_scores(graph: nx.DiGraph, elements: dict[str, torch.Tensor], *, aggregation: str, finish: str
                ) -> dict[tuple[str, int | None], torch.Tensor]:
    """(unit kind, layer or None) -> one score per unit, from per-tensor element scores."""
    scores = {}
    for node, data in graph.nodes(data=True):
        if node[0] != "unit":
            continue
        members = [channel_scores(elements[target[1]], target[2], data["count"], finish)
                   for _, target in graph.out_edges(node) if target[0] == "slice" and target[1] in elements]
        if members:
            scores[(data["kind"], data["layer"])] = combine_members(members, aggregation)
    return scores


def _top(scores: torch.Tensor, keep: int, alive: torch.Tensor | None = None) -> torch.Tensor:
    """A 0/1 mask keeping the `keep` highest scores (among units still alive)."""
    ranked = scores.clone().float()
    if alive is not None:
        ranked[alive == 0] = -torch.inf
    mask = torch.zeros_like(ranked)
    mask[torch.topk(ranked, keep).indices] = 1.0
    return mask


def select_masks(scores: dict[tuple[str, int | None], torch.Tensor], source: Shape, target: Shape,
                 alive: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Binary masks (hooks' layout) reaching `target` exactly, same count in every layer."""
    alive = alive or {}
    masks: dict[str, torch.Tensor] = {}
    if target.layers < source.layers:
        layer_scores = torch.stack([scores[("layer", layer)][0] for layer in range(source.layers)])
        masks["layer"] = _top(layer_scores, target.layers, alive.get("layer"))
    if target.hidden < source.hidden:
        masks["hidden"] = _top(scores[("hidden", None)], target.hidden, alive.get("hidden"))
    if target.intermediate < source.intermediate:
        masks["intermediate"] = torch.stack([
            _top(scores[("intermediate", layer)], target.intermediate,
                 None if "intermediate" not in alive else alive["intermediate"][layer])
            for layer in range(source.layers)])
    if target.heads < source.heads:
        masks["query_head"] = torch.stack([_head_mask(scores, layer, source, target, alive.get("query_head"))
                                     for layer in range(source.layers)])
    return masks


def _head_mask(scores: dict, layer: int, source: Shape, target: Shape, alive: torch.Tensor | None) -> torch.Tensor:
    """Whole KV groups first, then the same number of query heads inside each kept group."""
    alive_heads = None if alive is None else alive[layer].reshape(source.kv_heads, source.group_size)
    alive_groups = None if alive_heads is None else alive_heads.amax(1)
    groups = _top(scores[("kv_group", layer)], target.kv_heads, alive_groups) \
        if target.kv_heads < source.kv_heads else torch.ones(source.kv_heads)
    heads = torch.zeros(source.kv_heads, source.group_size)
    per_head = scores.get(("query_head", layer))
    for group in torch.nonzero(groups).flatten().tolist():
        if target.group_size == source.group_size:
            heads[group] = 1.0
            continue
        members = per_head.reshape(source.kv_heads, source.group_size)[group]
        heads[group] = _top(members, target.group_size, None if alive_heads is None else alive_heads[group])
    return heads.flatten()
