"""DRPruning's worst-case mixture: the most adversarial q in a chi-square ball around p_R.

    q(eta) = floor(normalise(p_R * relu(excess - eta)))
    chi2(q, p_R) = 1/2 * sum_i p_R,i * (q_i / p_R,i - 1)^2

eta is found by bisection so that |chi2 - rho| <= tolerance; raising eta concentrates q on the
largest excess losses, so chi2 grows with eta. The floor clamps q_i / p_R,i at min_prob and
renormalises; then q is clamped from below at min(p_R) and renormalised again (the reference's
clamp_q_to_min). The steps and their order are those of DRPruning's DRO_loading_callback.
"""

from __future__ import annotations

import math

import numpy as np


def chi_square(q: np.ndarray, p: np.ndarray) -> float:
    return float(0.5 * np.sum(p * (q / p - 1.0) ** 2))


def floor_to_ratio(q: np.ndarray, p: np.ndarray, min_prob: float) -> np.ndarray:
    """q with q_i / p_i clamped at min_prob from below, renormalised (so a floored entry can end a
    little under its floor, as in the reference)."""
    floored = np.maximum(q / p, min_prob) * p
    return floored / floored.sum()


def clamp_to_smallest(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """q clamped from below at the smallest entry of p, renormalised: small domains keep a real share."""
    clamped = np.maximum(q, p.min())
    return clamped / clamped.sum()


def worst_case_weights(excess: np.ndarray, p_ref: np.ndarray, *, rho: float, min_prob: float,
                       tolerance: float, clamp_q_to_min: bool, max_iterations: int = 1000
                       ) -> tuple[np.ndarray, float]:
    """(q, eta): q maximises the expected excess loss subject to chi2(q, p_ref) <= rho (within
    `tolerance`) and the floors. Needs a positive largest excess (see drpruning.positive_excess)."""
    excess, p_ref = np.asarray(excess, dtype=np.float64), np.asarray(p_ref, dtype=np.float64)
    top = float(excess.max())

    def q_at(eta: float) -> np.ndarray | None:
        raw = p_ref * np.maximum(excess - eta, 0.0)
        return None if raw.sum() <= 0 else floor_to_ratio(raw / raw.sum(), p_ref, min_prob)

    def gap(eta: float) -> float:  # NaN at eta >= every excess (q undefined); bisection midpoints stay below
        q = q_at(eta)
        return math.nan if q is None else chi_square(q, p_ref) - rho

    low, high = -top / (math.sqrt(2 * rho + 1) - 1), top
    while gap(low) > 0:  # widen the bracket downwards until its lower end is inside the ball
        low, high = low - 2 * (high - low), low
    eta = 0.5 * (low + high)
    for _ in range(max_iterations):
        eta = 0.5 * (low + high)
        value = gap(eta)
        if abs(value) <= tolerance:
            break
        if value > 0:
            high = eta
        else:
            low = eta
    q = q_at(eta)
    if q is None:  # the bisection found no inner point: keep the reference ratio
        q = p_ref.copy()
    if clamp_q_to_min:
        q = clamp_to_smallest(q, p_ref)
    return q, eta
