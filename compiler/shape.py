"""Target shapes: resolve the spec's target against the source, count parameters.

A parameter budget keeps every layer and shrinks each width the method may
prune (heads by whole KV groups, hidden, intermediate) by one common factor,
choosing the largest such shape within budget. Head counts round down to one
the architecture's config accepts (transformers 5 wants hidden divisible by heads).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cache

from shearc.errors import Problem

from .families import Shape
from .source import SourceModel, hf_config
from .spec import TargetSpec


def count_params(source: SourceModel, shape: Shape) -> int:
    """All parameters of the architecture at `shape`, as sum(p.numel()) counts them."""
    return source.parameter_count(shape.extents(source.vocab), shape.layers)


def embedding_params(source: SourceModel, shape: Shape) -> int:
    """Token embedding plus an untied output head: what 'non-embedding' counts leave out."""
    return source.vocab * shape.hidden * (1 if source.tied else 2)


def exact_shape(source: SourceModel, target: TargetSpec) -> Shape:
    base = source.shape
    heads = target.heads or base.heads
    if target.kv_heads is not None:
        kv_heads = target.kv_heads
    elif base.kv_heads == base.heads:  # multi-head stays multi-head
        kv_heads = heads
    else:
        kv_heads = base.kv_heads
    return Shape(
        layers=target.layers or base.layers,
        hidden=target.hidden or base.hidden,
        heads=heads,
        kv_heads=kv_heads,
        intermediate=target.intermediate or base.intermediate,
        head_dim=base.head_dim,
    )


def budget_shape(source: SourceModel, budget: int, granularities: list[str], multiple_of: int
                 ) -> tuple[Shape | None, list[Problem]]:
    """The largest shape of the one-factor family whose parameter count is <= budget."""
    base = source.shape
    total = count_params(source, base)
    if budget >= total:
        return None, [Problem(f"budget {budget:,} is not below the source's {total:,} parameters", "target.params")]
    widths = [g for g in ("head", "hidden", "intermediate") if g in granularities]

    @cache
    def accepted(hidden: int, kv_heads: int) -> bool:
        """Does transformers accept this attention layout (e.g. hidden divisible by heads)?"""
        shape = replace(base, hidden=hidden, kv_heads=kv_heads, heads=kv_heads * base.group_size)
        try:
            hf_config(source.adapter.config_for(source.config, shape))
        except Exception:
            return False
        return True

    def shape_at(factor: float) -> Shape:
        shape = base
        if "hidden" in widths:
            hidden = max(multiple_of, math.floor(base.hidden * factor / multiple_of) * multiple_of)
            shape = replace(shape, hidden=hidden)
        if "head" in widths:
            # the largest KV-group count at or below the factor that the config accepts (non-decreasing in factor)
            wanted = max(1, math.floor(base.kv_heads * factor))
            kv = next((k for k in range(wanted, 0, -1) if accepted(shape.hidden, k)), wanted)
            shape = replace(shape, kv_heads=kv, heads=kv * base.group_size)
        if "intermediate" in widths:
            inter = max(multiple_of, math.floor(base.intermediate * factor / multiple_of) * multiple_of)
            shape = replace(shape, intermediate=inter)
        return shape

    if widths:
        low, high = 0.0, 1.0  # count(shape_at(f)) is non-decreasing in f
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if count_params(source, shape_at(middle)) <= budget else (low, middle)
        best = shape_at(low)
    elif "layer" in granularities:
        best = replace(base, layers=1)
        for layers in range(base.layers, 0, -1):
            if count_params(source, replace(base, layers=layers)) <= budget:
                best = replace(base, layers=layers)
                break
    else:
        best = base
    smallest = count_params(source, best)
    if smallest > budget:
        return None, [Problem(f"budget {budget:,} is below the smallest shape pruning "
                              f"{', '.join(granularities)} can reach ({smallest:,} parameters)", "target.params")]
    return best, []
