"""Score-based pruning: an importance method's unit scores -> exact-shape binary masks, in one or several rounds.

    prune: {method: taylor, estimator: element-first, aggregation: sum, iterations: 1}
    prune: {method: magnitude, norm: l2, aggregation: mean}

Each round scores the units still alive (with the masks so far applied through hooks)
and keeps the top ones, moving the shape linearly from the source's to the target's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import networkx as nx
import torch

from shearc.compiler.families import FamilyAdapter, Shape

from ..masks.hooks import MaskHooks
from .methods import ImportanceMethod
from .units import select_masks


def round_shape(source: Shape, target: Shape, done: int, rounds: int) -> Shape:
    """The shape after `done` of `rounds` equal steps from source to target."""
    def step(start: int, end: int) -> int:
        return round(start - (start - end) * done / rounds)

    kv_heads = step(source.kv_heads, target.kv_heads)
    group = step(source.group_size, target.group_size)
    return replace(target, layers=step(source.layers, target.layers), hidden=step(source.hidden, target.hidden),
                   kv_heads=kv_heads, heads=kv_heads * group,
                   intermediate=step(source.intermediate, target.intermediate))


def score_and_select(model: torch.nn.Module, adapter: FamilyAdapter, graph: nx.DiGraph, source: Shape,
                     target: Shape, method: ImportanceMethod, calibration: Callable[[], Iterable[torch.Tensor]],
                     batch_size: int = 1) -> dict[str, torch.Tensor]:
    """Binary masks reaching `target` in `method.rounds` rounds, each scoring the units still alive with
    `method` (calibration windows `batch_size` at a time where it takes gradients)."""
    rounds = method.rounds
    masks: dict[str, torch.Tensor] = {}
    hooks = MaskHooks(model, adapter)
    try:
        for done in range(1, rounds + 1):
            hooks.values = masks
            scores = method.unit_scores(model, adapter, graph, calibration, batch_size)
            masks = select_masks(scores, source, round_shape(source, target, done, rounds), alive=masks)
    finally:
        hooks.remove()
    return masks
