"""Score-based pruning (taylor, magnitude): scores -> exact-shape binary masks, in one or several rounds.

    prune: {method: taylor, estimator: element-first, aggregation: sum, iterations: 1}
    prune: {method: magnitude, norm: l2, aggregation: mean}

Each round scores the units still alive (with the masks so far applied through hooks)
and keeps the top ones, moving the shape linearly from the source's to the target's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import networkx as nx
import torch

from shearc.compiler.adapters import LlamaFamilyAdapter, Shape
from shearc.compiler.spec.prune import SECOND_ORDER_ESTIMATORS

from ..masks.hooks import MaskHooks
from ..train.signal import sequence_losses
from .scores import SIGNED_ESTIMATORS, magnitude_element_scores, taylor_element_scores
from .units import select_masks, unit_scores


def accumulate_gradients(model: torch.nn.Module, samples: Iterable[torch.Tensor], *, second_order: bool,
                         batch_size: int = 1) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Mean gradient of the LM loss over samples (each sample's mean over its tokens), in fp32, and the
    Fisher diagonal mean_j (dL_j/dW)^2 for second-order estimators.

    First order: equal-length samples go through `batch_size` at a time and backward sums their
    gradients into .grad, which becomes the result (fp32 models: no second copy of the gradients;
    other dtypes sum into an fp32 accumulator). The Fisher term needs each sample's own gradient:
    then one backward per sample.
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    in_grad = not second_order and all(p.dtype == torch.float32 for p in params.values())  # .grad is the sum
    sums = {} if in_grad else {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()} if second_order else None
    model.zero_grad(set_to_none=True)
    count = 0
    for batch in _batches(samples, 1 if second_order else batch_size):
        sequence_losses(model, batch).sum().backward()
        count += len(batch)
        if in_grad:
            continue
        for name, param in params.items():
            if param.grad is None:
                continue
            sums[name] += param.grad.float()
            if fisher is not None:
                fisher[name] += param.grad.float() ** 2
        model.zero_grad(set_to_none=True)
    if count == 0:
        raise ValueError("no calibration samples")
    if in_grad:
        sums = {name: p.grad if p.grad is not None else torch.zeros_like(p) for name, p in params.items()}
        model.zero_grad(set_to_none=True)
    for name in sums:
        sums[name] /= count
        if fisher is not None:
            fisher[name] /= count
    return sums, fisher


def _batches(samples: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    batch: list[torch.Tensor] = []
    for sample in samples:
        batch.append(sample.reshape(-1))
        if len(batch) == size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def round_shape(source: Shape, target: Shape, done: int, rounds: int) -> Shape:
    """The shape after `done` of `rounds` equal steps from source to target."""
    def step(start: int, end: int) -> int:
        return round(start - (start - end) * done / rounds)

    kv_heads = step(source.kv_heads, target.kv_heads)
    group = step(source.group_size, target.group_size)
    return replace(target, layers=step(source.layers, target.layers), hidden=step(source.hidden, target.hidden),
                   kv_heads=kv_heads, heads=kv_heads * group,
                   intermediate=step(source.intermediate, target.intermediate))


def element_scores(model: torch.nn.Module, params: dict[str, Any],
                   calibration: Callable[[], Iterable[torch.Tensor]], batch_size: int) -> dict[str, torch.Tensor]:
    weights = dict(model.named_parameters())
    if params["method"] == "magnitude":
        return {name: magnitude_element_scores(w, params["norm"]) for name, w in weights.items()}
    second = params["estimator"] in SECOND_ORDER_ESTIMATORS
    grads, fisher = accumulate_gradients(model, calibration(), second_order=second, batch_size=batch_size)
    # Each gradient is dropped once scored: the scores take its place instead of adding to it.
    return {name: taylor_element_scores(w, grads.pop(name), None if fisher is None else fisher.pop(name),
                                        params["estimator"]) for name, w in weights.items()}


def score_and_select(model: torch.nn.Module, adapter: LlamaFamilyAdapter, graph: nx.DiGraph, source: Shape,
                     target: Shape, params: dict[str, Any], calibration: Callable[[], Iterable[torch.Tensor]],
                     batch_size: int = 1) -> dict[str, torch.Tensor]:
    """Binary masks reaching `target` (taylor or magnitude, per the plan's prune parameters); first-order
    Taylor gradients are taken `batch_size` calibration windows at a time."""
    rounds = params.get("iterations", 1)
    finish = "abs" if params.get("estimator") in SIGNED_ESTIMATORS else "sum"
    masks: dict[str, torch.Tensor] = {}
    hooks = MaskHooks(model, adapter)
    try:
        for done in range(1, rounds + 1):
            hooks.values = masks
            elements = element_scores(model, params, calibration, batch_size)
            scores = unit_scores(graph, elements, aggregation=params["aggregation"], finish=finish)
            masks = select_masks(scores, source, round_shape(source, target, done, rounds), alive=masks)
    finally:
        hooks.remove()
    return masks
