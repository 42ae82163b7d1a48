"""The dependency graph of coupled structures (networkx).

Nodes are prunable *units* (one node per unit kind and layer, carrying the
number of units it stands for) and the tensor *slices* they own (one node per
parameter axis). An edge u -> v says "removing a unit of u forces removing
`width` elements of v". The graph is built from the adapter's description of
one block (which axis of which parameter carries hidden, attn, kv or inter),
not from hand-written cases per architecture.

    hidden channel        -> column of embed/lm_head, element of every norm, q/k/v/gate/up inputs,
                             o_proj/down_proj outputs (one unit shared by every layer)
    kv_group (layer l)    -> head_dim rows of k/v, group_size*head_dim rows of q, matching o_proj columns
    query_head (layer l)  -> head_dim rows of q, matching o_proj columns (only when group_size > 1)
    intermediate (l)      -> row of gate/up, column of down
    layer l               -> every tensor of the block, and the layer's other units
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from .families import Shape
from .source import SourceModel

UNIT_GRANULARITY = {
    "layer": "layer",
    "hidden": "hidden",
    "kv_group": "head",
    "query_head": "head",
    "intermediate": "intermediate",
}


def unit_widths(shape: Shape) -> dict[str, dict[str, int]]:
    """Unit kind -> {axis symbol: elements one unit owns along that axis}."""
    widths = {
        "hidden": {"hidden": 1},
        "kv_group": {"kv": shape.head_dim, "attn": shape.group_size * shape.head_dim},
        "intermediate": {"inter": 1},
    }
    if shape.group_size > 1:  # under MHA a query head *is* its KV group
        widths["query_head"] = {"attn": shape.head_dim}
    return widths


def unit_counts(shape: Shape) -> dict[str, int]:
    """How many units of each kind a layer (or the model, for hidden) has."""
    return {
        "layer": shape.layers,
        "hidden": shape.hidden,
        "kv_group": shape.kv_heads,
        "query_head": shape.heads,
        "intermediate": shape.intermediate,
    }


def build_graph(source: SourceModel) -> nx.DiGraph:
    shape, vocab = source.shape, source.vocab
    widths = unit_widths(shape)
    counts = unit_counts(shape)
    graph = nx.DiGraph()

    def add_tensor(name: str, axes: tuple[str, ...], layer: int | None) -> None:
        dims = [shape.extent(symbol, vocab) for symbol in axes]
        numel = math.prod(dims)
        for axis, symbol in enumerate(axes):
            slice_node = ("slice", name, axis)
            graph.add_node(slice_node, kind="slice", tensor=name, axis=axis, extent=dims[axis], numel=numel)
            for kind, per_symbol in widths.items():
                if symbol in per_symbol:
                    unit = ("unit", kind, None if kind == "hidden" else layer)
                    graph.add_edge(unit, slice_node, width=per_symbol[symbol])
        if layer is not None:
            graph.add_edge(("unit", "layer", layer), ("slice", name, 0), width=dims[0])

    graph.add_node(("unit", "hidden", None), kind="hidden", layer=None, count=counts["hidden"])
    for name, axes in source.outer_params.items():
        add_tensor(name, axes, None)
    for layer in range(shape.layers):
        layer_unit = ("unit", "layer", layer)
        graph.add_node(layer_unit, kind="layer", layer=layer, count=1)
        for kind in widths:
            if kind != "hidden":
                graph.add_node(("unit", kind, layer), kind=kind, layer=layer, count=counts[kind])
                graph.add_edge(layer_unit, ("unit", kind, layer), width=counts[kind])
        if "query_head" in widths:
            graph.add_edge(("unit", "kv_group", layer), ("unit", "query_head", layer), width=shape.group_size)
        for name, axes in source.block_params.items():
            add_tensor(f"{source.adapter.layer_prefix}.{layer}.{name}", axes, layer)
    return graph


@dataclass(frozen=True)
class GroupSummary:
    kind: str
    granularity: str
    scope: str  # "model" or "layer"
    count: int  # units per scope
    scopes: int
    params_per_unit: int  # parameters one unit owns (at the source shape)
    tensors: list[str]  # touched slices, with the layer index written as *

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def summarize_groups(graph: nx.DiGraph, layer_prefix: str) -> list[GroupSummary]:
    by_kind: dict[str, list[tuple]] = {}
    for node, data in graph.nodes(data=True):
        if node[0] == "unit":
            by_kind.setdefault(data["kind"], []).append(node)
    summaries = []
    for kind in ("layer", "hidden", "kv_group", "query_head", "intermediate"):
        nodes = by_kind.get(kind)
        if not nodes:
            continue
        first = min(nodes, key=lambda n: -1 if n[2] is None else n[2])
        count = graph.nodes[first]["count"]
        owned = 0
        patterns = set()
        for _, target, data in graph.out_edges(first, data=True):
            if target[0] != "slice":
                continue
            slice_data = graph.nodes[target]
            owned += data["width"] * slice_data["numel"] // slice_data["extent"]
            patterns.add(f"{_pattern(slice_data['tensor'], layer_prefix)}[axis {slice_data['axis']}]")
        summaries.append(GroupSummary(
            kind=kind,
            granularity=UNIT_GRANULARITY[kind],
            scope="model" if first[2] is None else "layer",
            count=count,
            scopes=len(nodes),
            params_per_unit=owned,
            tensors=sorted(patterns),
        ))
    return summaries


def _pattern(tensor: str, layer_prefix: str) -> str:
    if tensor.startswith(layer_prefix + "."):
        rest = tensor[len(layer_prefix) + 1:].split(".", 1)[1]
        return f"{layer_prefix}.*.{rest}"
    return tensor
