"""`mixer:` which domain each batch comes from.

    mixer: {method: constant}
    mixer: {method: dynamic-batch-loading}        # Sheared-LLaMA
    mixer: {method: drpruning, rho: 0.1}          # DRPruning
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import Section
from .registry import MIXERS


def _reference_field() -> Literal["given", "source"]:
    return Field(
        "given",
        description="Where the reference losses come from: `given` per domain in data.domains[].reference_loss, "
        "or `source`: the source model's own per-domain eval loss, measured before pruning.",
    )


@MIXERS.register("constant")
class ConstantMixerSpec(Section):
    """The initial proportions throughout."""

    method: Literal["constant"]


@MIXERS.register("dynamic-batch-loading")
class DynamicBatchLoadingSpec(Section):
    """Sheared-LLaMA: w <- softmax(log w + eta * (L_eval - L_ref)), smoothed, every eval."""

    method: Literal["dynamic-batch-loading"]
    eta: float = Field(1.0, gt=0, description="Step size of the exponentiated update.")
    smoothing: float = Field(1e-4, ge=0, lt=1, description="c in w <- (1 - c) w + c / k.")
    reference: Literal["given", "source"] = _reference_field()


@MIXERS.register("drpruning")
class DRPruningSpec(Section):
    """DRPruning: worst case in a chi-square ball around a moving reference ratio, against reference losses
    that scaling-law fits move during each stage."""

    method: Literal["drpruning"]
    rho: float = Field(0.1, gt=0, description="Radius of the chi-square ball around the reference ratio.")
    min_prob: float = Field(0.2, ge=0, lt=1, description="Floor on q_i / p_R,i (clamped, then renormalised).")
    clamp_q_to_min: bool = Field(
        True, description="Also clamp q from below at the smallest reference-ratio entry, then renormalise "
        "(the reference's clamp_q_to_min, on by default): small domains keep a real share.")
    signal: Literal["eval", "train-ema"] = Field(
        "eval", description="Per-domain loss driving the mixer: eval loss, or an EMA of the training loss "
        "(updated every step, read every eval_interval steps).")
    ema_alpha: float = Field(0.1, gt=0, le=1, description="EMA weight when signal is train-ema.")
    bisection_tolerance: float = Field(
        1e-4, gt=0, description="The bisection on eta stops once |chi2(q, p_R) - rho| is within this.")
    reference_shrink: float = Field(
        0.1, gt=0, lt=1, description="When every excess loss is negative, scale the reference losses by "
        "1 - shrink, 1 - 2 shrink, ... until the largest is positive."
    )
    ratio_step: float = Field(0.1, ge=0, le=1, description="delta in p_R <- delta q + (1 - delta) p_R.")
    ratio_update_after: float = Field(0.2, ge=0, le=1, description="Fraction of a stage before p_R moves.")
    ratio_clamp: float = Field(2.0, ge=1, description="p_R stays within [p_0 / clamp, clamp * p_0].")
    ratio_clamp_to_initial_range: bool = Field(
        True, description="After that clamp, also clamp p_R to [min p_0, max p_0] and renormalise (the reference "
        "does).")
    fit_reference: bool = Field(True, description="Refit a scaling law per domain to predict the reference loss: "
                                "the stage's first fit replaces the static reference, later fits can only lower it.")
    fit_huber_delta: float = Field(1e-3, gt=0, description="Huber delta of the robust scaling-law fit.")
    fit_history_after: float = Field(0.02, ge=0, le=1, description="Fraction of a stage before evals are "
                                     "recorded for the fit.")
    fit_max_points: int = Field(64, gt=1, description="Recorded evals kept per stage (the most recent).")
    fit_min_points: int = Field(11, gt=1, description="Recorded evals needed before a fit (the reference fits "
                                "once it has more than 10).")
    fit_min_progress: float = Field(0.1, ge=0, le=1, description="Fraction of a stage done before the fit is used.")
    fit_average_of: int = Field(3, gt=0, description="The prediction is the mean of this many best fits' "
                                "predictions.")
    reference: Literal["given", "source"] = _reference_field()

    @model_validator(mode="after")
    def _history_holds_a_fit(self) -> DRPruningSpec:
        if self.fit_min_points > self.fit_max_points:
            raise ValueError(f"fit_min_points ({self.fit_min_points}) exceeds fit_max_points ({self.fit_max_points}):"
                             " no fit could ever happen")
        return self
