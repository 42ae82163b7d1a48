"""DRPruning's worst-case mixture: the most adversarial q in a chi-square ball around p_R.

    q(eta) = floor(normalise(p_R * relu(excess - eta)))
    chi2(q, p_R) = 1/2 * sum_i p_R,i * (q_i / p_R,i - 1)^2

eta is found by bisection so that chi2 = rho (q is taken on the feasible side, so
chi2 <= rho). Raising eta concentrates q on the largest excess losses, so chi2 grows
with eta. The floor keeps q_i >= min_prob * p_R,i exactly.
"""

from __future__ import annotations

import math

import numpy as np


def chi_square(q: np.ndarray, p: np.ndarray) -> float:
    return float(0.5 * np.sum(p * (q / p - 1.0) ** 2))


def floor_to_ratio(q: np.ndarray, p: np.ndarray, min_prob: float) -> np.ndarray:
    """The distribution closest in shape to q with q_i >= min_prob * p_i, summing to 1.

    Entries below their floor are pinned to it; the rest share what is left in
    proportion to q. Repeats until no entry falls below (at most len(q) rounds).
    """
    floor = min_prob * p
    pinned = np.zeros(len(q), dtype=bool)
    out = q / q.sum()
    for _ in range(len(q)):
        below = (out < floor) & ~pinned
        if not below.any():
            break
        pinned |= below
        free_mass = 1.0 - floor[pinned].sum()
        rest = q * ~pinned
        out = np.where(pinned, floor, rest / rest.sum() * free_mass if rest.sum() > 0 else 0.0)
    return out


def worst_case_weights(excess: np.ndarray, p_ref: np.ndarray, *, rho: float, min_prob: float,
                       tolerance: float, max_iterations: int = 200) -> tuple[np.ndarray, float]:
    """(q, eta): q maximises the expected excess loss subject to chi2(q, p_ref) <= rho and the floor."""
    excess, p_ref = np.asarray(excess, dtype=np.float64), np.asarray(p_ref, dtype=np.float64)
    top = float(excess.max())

    def q_at(eta: float) -> np.ndarray:
        raw = p_ref * np.maximum(excess - eta, 0.0)
        if raw.sum() <= 0:  # eta at or above every excess: all mass on the largest
            raw = p_ref * (excess == top)
        return floor_to_ratio(raw, p_ref, min_prob)

    def gap(eta: float) -> float:
        return chi_square(q_at(eta), p_ref) - rho

    high = top
    if gap(high) <= 0:  # even the most concentrated q stays inside the ball
        return q_at(high), high
    scale = max(abs(top), 1e-12)
    low = -scale / (math.sqrt(2 * rho + 1) - 1)
    while gap(low) > 0:  # widen the bracket until its lower end is feasible
        low -= high - low
    for _ in range(max_iterations):
        middle = 0.5 * (low + high)
        value = gap(middle)
        if value > 0:
            high = middle
        else:
            low = middle
            if -value <= tolerance:
                break
    return q_at(low), low
