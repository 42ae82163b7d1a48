"""`mixer:` which domain each batch comes from.

    mixer: {method: constant}
    mixer: {method: dynamic-batch-loading}        # Sheared-LLaMA
    mixer: {method: drpruning, rho: 0.1}          # DRPruning
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..registry import MIXERS
from .base import Section


def _reference_field() -> Literal["given", "source"]:
    return Field(
        "given",
        description="Where the reference losses come from: `given` per domain in data.domains[].reference_loss, "
        "or `source`: the source model's own per-domain eval loss, measured before pruning.",
    )


@MIXERS.register("constant")
class ConstantMixer(Section):
    """The initial proportions throughout."""

    method: Literal["constant"]


@MIXERS.register("dynamic-batch-loading")
class DynamicBatchLoadingMixer(Section):
    """Sheared-LLaMA: w <- softmax(log w + eta * (L_eval - L_ref)), smoothed, every eval."""

    method: Literal["dynamic-batch-loading"]
    eta: float = Field(1.0, gt=0, description="Step size of the exponentiated update.")
    smoothing: float = Field(1e-4, ge=0, lt=1, description="c in w <- (1 - c) w + c / k.")
    reference: Literal["given", "source"] = _reference_field()


@MIXERS.register("drpruning")
class DRPruningMixer(Section):
    """DRPruning: worst case in a chi-square ball around a moving reference ratio."""

    method: Literal["drpruning"]
    rho: float = Field(0.1, gt=0, description="Radius of the chi-square ball around the reference ratio.")
    min_prob: float = Field(0.2, ge=0, lt=1, description="Floor on q_i / p_R,i.")
    signal: Literal["eval", "train-ema"] = Field(
        "eval", description="Per-domain loss driving the mixer: eval loss, or an EMA of the training loss."
    )
    ema_alpha: float = Field(0.1, gt=0, le=1, description="EMA weight when signal is train-ema.")
    bisection_tolerance: float = Field(1e-4, gt=0, description="Tolerance of the bisection on eta.")
    reference_shrink: float = Field(
        0.1, gt=0, lt=1, description="When every excess loss is negative, scale the reference losses by "
        "1 - shrink, 1 - 2 shrink, ... until the largest is positive."
    )
    ratio_step: float = Field(0.1, ge=0, le=1, description="delta in p_R <- delta q + (1 - delta) p_R.")
    ratio_update_after: float = Field(0.2, ge=0, le=1, description="Fraction of a stage before p_R moves.")
    ratio_clamp: float = Field(2.0, ge=1, description="p_R stays within [p_0 / clamp, clamp * p_0].")
    fit_reference: bool = Field(True, description="Refit a scaling law per domain to predict the reference loss.")
    fit_huber_delta: float = Field(1e-3, gt=0, description="Huber delta of the robust scaling-law fit.")
    fit_min_points: int = Field(10, gt=1, description="Recorded evals needed before the fit is used.")
    fit_min_progress: float = Field(0.1, ge=0, le=1, description="Fraction of a stage done before the fit is used.")
    reference: Literal["given", "source"] = _reference_field()
