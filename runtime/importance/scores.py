"""Element scores of one weight tensor: pure functions.

    prune: {method: taylor, estimator: element-first}   # or vector, element-second, mixed
    prune: {method: magnitude, norm: l2}

With salience W * dL/dW and the Fisher diagonal F = sum_j (dL_j/dW)^2 / N:
- vector:          a slice scores |sum of W * G| (signed here; the sum and |.| happen per slice)
- element-first:   |W * G|
- element-second:  |W * G - 1/2 * W * F * W|
- mixed:           |W * G| - 1/2 * W * F * W
- magnitude l1:    |W|;  l2: W^2 (a slice scores the square root of its sum)
"""

from __future__ import annotations

import torch

SIGNED_ESTIMATORS = frozenset({"vector"})  # summed over the slice before taking |.|


def taylor_element_scores(weight: torch.Tensor, grad: torch.Tensor, fisher: torch.Tensor | None,
                          estimator: str) -> torch.Tensor:
    weight, grad = weight.detach().float(), grad.float()
    salience = weight * grad
    if estimator in ("vector", "element-first"):
        return salience if estimator == "vector" else salience.abs()
    if fisher is None:
        raise ValueError(f"estimator {estimator} needs the Fisher diagonal")
    curvature = 0.5 * weight * fisher.float() * weight
    if estimator == "element-second":
        return (salience - curvature).abs()
    if estimator == "mixed":
        return salience.abs() - curvature
    raise ValueError(f"unknown Taylor estimator {estimator!r}")


def magnitude_element_scores(weight: torch.Tensor, norm: str) -> torch.Tensor:
    weight = weight.detach().float()
    if norm == "l1":
        return weight.abs()
    if norm == "l2":
        return weight * weight
    raise ValueError(f"unknown norm {norm!r}")


def aggregate(members: list[torch.Tensor], how: str) -> torch.Tensor:
    """Member scores of a group [members x units] -> one score per unit."""
    stacked = torch.stack(members)
    if how == "sum":
        return stacked.sum(0)
    if how == "prod":
        return stacked.prod(0)
    if how == "max":
        return stacked.max(0).values
    if how == "last":
        return stacked[-1]
    raise ValueError(f"unknown aggregation {how!r}")
