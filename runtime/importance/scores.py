"""Element scores of one weight tensor: pure functions, as LLM-Pruner's estimators define them.

    prune: {method: taylor, estimator: element-first}   # or vector, element-hessian, element-mix
    prune: {method: magnitude, norm: l2}

With salience W * dL/dW and the Fisher diagonal H = sum_j (dL_j/dW)^2 / N (the reference's names):
- vector (vectorize):          W * G, signed: a channel scores |sum| (units.channel_scores)
- element-first (param_first): |W * G|
- element-hessian (param_second): |W * H * W|
- element-mix (param_mix):     |W * G - 1/2 * W * H * W|
- magnitude l1: |W|;  l2: W^2 (a channel scores the sum)
"""

from __future__ import annotations

import torch

SIGNED_ESTIMATORS = frozenset({"vector"})  # summed over each channel before taking |.|


def taylor_element_scores(weight: torch.Tensor, grad: torch.Tensor, fisher: torch.Tensor | None,
                          estimator: str) -> torch.Tensor:
    weight, grad = weight.detach().float(), grad.float()
    salience = weight * grad
    if estimator in ("vector", "element-first"):
        return salience if estimator == "vector" else salience.abs()
    if fisher is None:
        raise ValueError(f"estimator {estimator} needs the Fisher diagonal")
    curvature = weight * fisher.float() * weight
    if estimator == "element-hessian":
        return curvature.abs()
    if estimator == "element-mix":
        return (salience - 0.5 * curvature).abs()
    raise ValueError(f"unknown Taylor estimator {estimator!r}")


def magnitude_element_scores(weight: torch.Tensor, norm: str) -> torch.Tensor:
    weight = weight.detach().float()
    if norm == "l1":
        return weight.abs()
    if norm == "l2":
        return weight * weight
    raise ValueError(f"unknown norm {norm!r}")


def aggregate(members: list[torch.Tensor], how: str) -> torch.Tensor:
    """Member scores of a group, each [units, ...] -> one score per unit (and channel)."""
    stacked = torch.stack(members)
    if how == "sum":
        return stacked.sum(0)
    if how == "mean":
        return stacked.mean(0)
    if how == "prod":
        return stacked.prod(0)
    if how == "max":
        return stacked.max(0).values
    if how == "last":
        return stacked[-1]
    raise ValueError(f"unknown aggregation {how!r}")
