"""DRPruning's per-domain scaling law, fitted robustly in process with scipy.

    pruning:     L(D, s) = A * D^-alpha * s^-beta + E   (D: tokens seen, s: expected sparsity)
    recovering:  L(D)    = A * D^-alpha + E

Fitted with a Huber loss (delta 1e-3) from a grid of starting points: every start
is screened briefly and the three lowest-cost ones are refined; DRPruning averages their predictions.
D is divided by its first value inside the fit only, for conditioning; A is
reported in the caller's units.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

SPARSITY_FLOOR = 1e-3  # s = 0 (nothing pruned yet) would send s^-beta to 0 or infinity
SCREEN_EVALUATIONS, REFINED_STARTS, REFINE_EVALUATIONS = 20, 3, 300


@dataclass(frozen=True)
class ScalingLaw:
    A: float
    alpha: float
    beta: float  # 0 when the law has no sparsity term
    E: float
    cost: float

    def predict(self, tokens: float, sparsity: float | None = None) -> float:
        value = self.A * tokens ** -self.alpha
        if sparsity is not None:
            value *= max(sparsity, SPARSITY_FLOOR) ** -self.beta
        return value + self.E

    def as_dict(self) -> dict[str, float]:
        return {"A": self.A, "alpha": self.alpha, "beta": self.beta, "E": self.E}


def fit_scaling_law(tokens: np.ndarray, losses: np.ndarray, sparsity: np.ndarray | None = None, *,
                    huber_delta: float = 1e-3) -> ScalingLaw | None:
    """The best of a grid of robust fits; None if no start converges to finite values."""
    laws = fit_scaling_laws(tokens, losses, sparsity, huber_delta=huber_delta, count=1)
    return laws[0] if laws else None


def fit_scaling_laws(tokens: np.ndarray, losses: np.ndarray, sparsity: np.ndarray | None = None, *,
                     huber_delta: float = 1e-3, count: int = REFINED_STARTS) -> list[ScalingLaw]:
    """The `count` best of a grid of robust fits, lowest cost first (DRPruning averages the best
    three's predictions); empty if no start converges to finite values."""
    tokens, losses = np.asarray(tokens, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    scale = tokens[0]
    log_d = np.log(tokens / scale)
    log_s = None if sparsity is None else np.log(np.maximum(np.asarray(sparsity, np.float64), SPARSITY_FLOOR))
    floor_loss = float(losses.min())

    def power(theta: np.ndarray) -> np.ndarray:
        exponent = theta[0] - theta[1] * log_d
        if log_s is not None:
            exponent = exponent - theta[3] * log_s
        return np.exp(exponent)

    def residuals(theta: np.ndarray) -> np.ndarray:
        return power(theta) + theta[2] - losses

    def jacobian(theta: np.ndarray) -> np.ndarray:
        term = power(theta)
        columns = [term, -term * log_d, np.ones_like(term)] + ([-term * log_s] if log_s is not None else [])
        return np.stack(columns, axis=1)

    spread = max(float(losses.max() - floor_loss), 1e-3)
    grid = {
        "log_a": [math.log(spread) - 1.0, math.log(spread) + 1.0],
        "alpha": [0.2, 0.8],
        "E": [0.0, 0.9 * floor_loss],
        "beta": [0.0, -0.5] if log_s is not None else [],
    }
    lower = [-50.0, 0.0, 0.0] + ([-5.0] if log_s is not None else [])
    upper = [50.0, 5.0, floor_loss] + ([5.0] if log_s is not None else [])
    def solve(start: np.ndarray, evaluations: int):
        try:
            result = least_squares(residuals, start, jac=jacobian, bounds=(lower, upper), loss="huber",
                                   f_scale=huber_delta, x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12,
                                   max_nfev=evaluations)
        except (ValueError, FloatingPointError):
            return None
        return result if np.isfinite(result.x).all() and np.isfinite(result.cost) else None

    # Screen every start briefly, then refine the most promising few to convergence.
    starts = [np.clip(np.array(start, dtype=np.float64), lower, np.array(upper) - 1e-12)
              for start in itertools.product(*(values for values in grid.values() if values))]
    screened = [r for r in (solve(start, SCREEN_EVALUATIONS) for start in starts) if r is not None]
    screened.sort(key=lambda r: r.cost)
    refined = [r for r in (solve(r.x, REFINE_EVALUATIONS) for r in screened[:max(count, REFINED_STARTS)])
               if r is not None]
    refined.sort(key=lambda r: r.cost)

    def law(result) -> ScalingLaw:
        log_a, alpha, e = result.x[:3]
        beta = float(result.x[3]) if log_s is not None else 0.0
        return ScalingLaw(A=float(math.exp(log_a) * scale ** alpha), alpha=float(alpha), beta=beta, E=float(e),
                          cost=float(result.cost))

    return [law(result) for result in refined[:count]]
