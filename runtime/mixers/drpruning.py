"""`mixer: {method: drpruning, rho: 0.1, min_prob: 0.2}` (DRPruning).

At every update:
1. record (tokens, sparsity, loss) per domain; once a stage is `fit_min_progress` done
   and a domain has `fit_min_points` records, refit its scaling law and predict its
   loss at the end of the stage; L_ref = min(L_ref, prediction, lowest loss seen), so
   the reference never increases;
2. excess = L - L_ref (if all are negative, L_ref is scaled by 1 - shrink, 1 - 2 shrink, ...);
3. q = the worst case within chi2(q, p_R) <= rho, floored at min_prob * p_R: the new weights;
4. after `ratio_update_after` of the stage, p_R <- step * q + (1 - step) * p_R, clamped to
   [p_0 / clamp, clamp * p_0] and renormalised.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MIXER_IMPLEMENTATIONS, Mixer, Observation, StageInfo
from .dro import worst_case_weights
from .scaling_law import fit_scaling_law


def positive_excess(losses: np.ndarray, references: np.ndarray, shrink: float) -> tuple[np.ndarray, float]:
    """(excess, factor): L - factor * L_ref with the largest factor in 1, 1 - shrink, ... giving a positive max."""
    factor = 1.0
    while (losses - factor * references).max() <= 0 and factor > shrink:
        factor = round(factor - shrink, 12)
    if (losses - factor * references).max() <= 0:
        factor = 0.0
    return losses - factor * references, factor


def move_reference_ratio(p_ref: np.ndarray, q: np.ndarray, p_0: np.ndarray, *, step: float,
                         clamp: float) -> np.ndarray:
    low, high = p_0 / clamp, p_0 * clamp
    moved = step * q + (1 - step) * p_ref
    for _ in range(100):  # renormalising can leave the box again; repeat until it stays (it converges)
        moved = np.clip(moved, low, high)
        moved = moved / moved.sum()
        if (moved >= low - 1e-12).all() and (moved <= high + 1e-12).all():
            break
    return moved


@MIXER_IMPLEMENTATIONS.register("drpruning")
class DRPruningMixer(Mixer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.static_references = None if self.references is None else self.references.copy()
        self.ratio_start = self.initial.copy()  # p_0
        self.ratio = self.initial.copy()  # p_R
        self.history: list[list[float]] = []  # rows of [tokens..., sparsity, losses...] for this stage

    def set_reference(self, losses: np.ndarray) -> None:
        super().set_reference(losses)
        self.static_references = self.references.copy()

    def start_stage(self, stage: StageInfo, *, restart_weights: bool = False) -> None:
        """A new stage fits a new law: history and reference losses restart; p_R starts at the weights."""
        super().start_stage(stage, restart_weights=restart_weights)
        self.history = []
        self.references = None if self.static_references is None else self.static_references.copy()
        self.ratio_start = self._weights.copy()
        self.ratio = self._weights.copy()

    def update(self, observation: Observation) -> dict[str, Any]:
        references = self._require_references()
        params, stage = self.params, self.stage
        losses = np.asarray(observation.losses, dtype=np.float64)
        progress = observation.step / stage.total_steps
        row = np.concatenate([observation.tokens, [observation.sparsity or 0.0], losses]).astype(np.float64)
        self.history.append(row.tolist())  # plain floats: checkpoints hold no numpy values
        fits = self._refit(progress, observation) if params["fit_reference"] else {}
        for index, fit in fits.items():
            if fit is not None:
                references[index] = min(references[index], fit["prediction"], float(self._column(index, 2).min()))
        self.references = references
        excess, factor = positive_excess(losses, references, params["reference_shrink"])
        q, eta = worst_case_weights(excess, self.ratio, rho=params["rho"], min_prob=params["min_prob"],
                                    tolerance=params["bisection_tolerance"])
        self._weights = q
        if progress >= params["ratio_update_after"]:
            self.ratio = move_reference_ratio(self.ratio, q, self.ratio_start, step=params["ratio_step"],
                                              clamp=params["ratio_clamp"])
        return {"reference_losses": references, "excess": excess, "reference_scale": factor, "eta": eta,
                "reference_ratio": self.ratio, "fits": {self.names[i]: f for i, f in fits.items()}}

    def _column(self, domain: int, kind: int) -> np.ndarray:
        """kind 0: tokens, 1: sparsity, 2: losses, for one domain over the stage's history."""
        rows = np.asarray(self.history)
        k = len(self.names)
        return rows[:, [domain, k, k + 1 + domain][kind]]

    def _refit(self, progress: float, observation: Observation) -> dict[int, dict[str, float] | None]:
        params, stage = self.params, self.stage
        if progress < params["fit_min_progress"] or len(self.history) < params["fit_min_points"]:
            return {}
        pruning = stage.target_sparsity is not None
        fits: dict[int, dict[str, float] | None] = {}
        for index in range(len(self.names)):
            tokens = self._column(index, 0)
            usable = tokens > 0
            if usable.sum() < params["fit_min_points"]:
                continue
            law = fit_scaling_law(tokens[usable], self._column(index, 2)[usable],
                                  self._column(index, 1)[usable] if pruning else None,
                                  huber_delta=params["fit_huber_delta"])
            if law is None:
                fits[index] = None
                continue
            final_tokens = tokens[-1] * stage.total_steps / observation.step  # tokens at the end of the stage
            prediction = law.predict(final_tokens, stage.target_sparsity if pruning else None)
            fits[index] = {**law.as_dict(), "prediction": prediction}
        return fits

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "ratio": self.ratio.tolist(), "ratio_start": self.ratio_start.tolist(),
                "history": self.history,
                "static_references": None if self.static_references is None else self.static_references.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.ratio, self.ratio_start = np.asarray(state["ratio"]), np.asarray(state["ratio_start"])
        self.history = [list(row) for row in state["history"]]
        static = state["static_references"]
        self.static_references = None if static is None else np.asarray(static)


class TrainLossEMA:
    """`signal: train-ema`: per-domain EMA of the training loss, alpha as in the plan (0.1).

    A domain's first observation starts its average; domains absent from a batch keep theirs.
    """

    def __init__(self, domains: int, alpha: float) -> None:
        self.alpha = alpha
        self.values = np.full(domains, np.nan)

    def update(self, losses: np.ndarray, present: np.ndarray) -> np.ndarray:
        for index in np.flatnonzero(present):
            previous = self.values[index]
            fresh = float(losses[index])
            self.values[index] = fresh if np.isnan(previous) else self.alpha * fresh + (1 - self.alpha) * previous
        return self.values.copy()

    def state_dict(self) -> dict[str, Any]:
        return {"values": [None if np.isnan(v) else float(v) for v in self.values]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = np.array([np.nan if v is None else v for v in state["values"]])
