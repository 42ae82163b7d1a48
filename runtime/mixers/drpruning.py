"""`mixer: {method: drpruning, rho: 0.1, min_prob: 0.2}` (DRPruning).

At every update (the order of DRPruning's DRO_loading_callback):
1. once `fit_history_after` of the stage is done, record (tokens, sparsity, loss) per domain, keeping
   the last `fit_max_points` records. Once the stage is `fit_min_progress` done and a domain has
   `fit_min_points` records, fit its scaling law and predict its loss at the end of the stage: the mean
   of the best `fit_average_of` fits' predictions, each kept within [0, lowest loss seen]. A stage's
   first fit replaces the static reference loss outright; later fits can only lower it;
2. excess = L - L_ref (if all are negative, L_ref is scaled by 1 - shrink, 1 - 2 shrink, ...);
3. q = the worst case within chi2(q, p_R) <= rho, floored at min_prob * p_R and, with
   `clamp_q_to_min`, at min(p_R): the new weights;
4. after `ratio_update_after` of the stage, p_R <- step * q + (1 - step) * p_R, clamped to
   [p_0 / clamp, clamp * p_0] and, with `ratio_clamp_to_initial_range`, to [min p_0, max p_0],
   renormalised after each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import MIXER_IMPLEMENTATIONS, Mixer, Observation, StageInfo
from .dro import worst_case_weights
from .scaling_law import fit_scaling_laws


def positive_excess(losses: np.ndarray, references: np.ndarray, shrink: float) -> tuple[np.ndarray, float]:
    """(excess, factor): L - factor * L_ref with the largest factor in 1, 1 - shrink, ... giving a positive max."""
    factor = 1.0
    while (losses - factor * references).max() <= 0 and factor > shrink:
        factor = round(factor - shrink, 12)
    if (losses - factor * references).max() <= 0:
        factor = 0.0
    return losses - factor * references, factor


def move_reference_ratio(p_ref: np.ndarray, q: np.ndarray, p_0: np.ndarray, *, step: float, clamp: float,
                         clamp_to_initial_range: bool) -> np.ndarray:
    """p_R's step towards q, kept within [p_0 / clamp, clamp * p_0] and then [min p_0, max p_0]."""
    moved = step * q + (1 - step) * p_ref
    moved = moved / moved.sum()
    moved = np.clip(moved, p_0 / clamp, p_0 * clamp)
    moved = moved / moved.sum()
    if clamp_to_initial_range:
        moved = np.clip(moved, p_0.min(), p_0.max())
        moved = moved / moved.sum()
    return moved


@MIXER_IMPLEMENTATIONS.register("drpruning")
class DRPruningMixer(Mixer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.static_references = None if self.references is None else self.references.copy()
        self.ratio_start = self.initial.copy()  # p_0
        self.ratio = self.initial.copy()  # p_R
        self.history: list[list[float]] = []  # rows of [tokens..., sparsity, losses...] for this stage
        self.fitted = [False] * len(self.names)  # has this stage's law replaced the static reference yet?

    @property
    def uses_source_reference(self) -> bool:
        return self.params.reference == "source"

    @property
    def signal(self) -> str:
        return self.params.signal

    def set_reference(self, losses: np.ndarray) -> None:
        super().set_reference(losses)
        self.static_references = self.references.copy()

    def start_stage(self, stage: StageInfo, *, restart_weights: bool = False) -> None:
        """A new stage fits a new law: history and reference losses restart; p_0 and p_R start at the weights."""
        super().start_stage(stage, restart_weights=restart_weights)
        self.history = []
        self.fitted = [False] * len(self.names)
        self.references = None if self.static_references is None else self.static_references.copy()
        self.ratio_start = self._weights.copy()
        self.ratio = self._weights.copy()

    def update(self, observation: Observation) -> dict[str, Any]:
        references = self._require_references()
        params, stage = self.params, self.stage
        losses = np.asarray(observation.losses, dtype=np.float64)
        progress = observation.step / stage.total_steps
        if progress >= params.fit_history_after:
            row = np.concatenate([observation.tokens, [observation.sparsity or 0.0], losses]).astype(np.float64)
            # plain floats: checkpoints hold no numpy values
            self.history = [*self.history, row.tolist()][-params.fit_max_points:]
        fits = self._refit(progress, observation) if params.fit_reference else {}
        for index, fit in fits.items():
            if fit is not None:
                first = not self.fitted[index]
                references[index] = fit["prediction"] if first else min(references[index], fit["prediction"])
                self.fitted[index] = True
        self.references = references
        excess, factor = positive_excess(losses, references, params.reference_shrink)
        q, eta = worst_case_weights(excess, self.ratio, rho=params.rho, min_prob=params.min_prob,
                                    tolerance=params.bisection_tolerance, clamp_q_to_min=params.clamp_q_to_min)
        self._weights = q
        if progress >= params.ratio_update_after:
            self.ratio = move_reference_ratio(self.ratio, q, self.ratio_start, step=params.ratio_step,
                                              clamp=params.ratio_clamp,
                                              clamp_to_initial_range=params.ratio_clamp_to_initial_range)
        return {"reference_losses": references, "excess": excess, "reference_scale": factor, "eta": eta,
                "reference_ratio": self.ratio, "fits": {self.names[i]: f for i, f in fits.items()}}

    def _column(self, domain: int, kind: int) -> np.ndarray:
        """kind 0: tokens, 1: sparsity, 2: losses, for one domain over the stage's history."""
        rows = np.asarray(self.history)
        k = len(self.names)
        return rows[:, [domain, k, k + 1 + domain][kind]]

    def _refit(self, progress: float, observation: Observation) -> dict[int, dict[str, Any] | None]:
        params, stage = self.params, self.stage
        if progress < params.fit_min_progress or len(self.history) < params.fit_min_points:
            return {}
        pruning = stage.target_sparsity is not None
        fits: dict[int, dict[str, Any] | None] = {}
        for index in range(len(self.names)):
            tokens, losses = self._column(index, 0), self._column(index, 2)
            usable = tokens > 0
            if usable.sum() < params.fit_min_points:
                continue
            laws = fit_scaling_laws(tokens[usable], losses[usable],
                                    self._column(index, 1)[usable] if pruning else None,
                                    huber_delta=params.fit_huber_delta, count=params.fit_average_of)
            if not laws:
                fits[index] = None
                continue
            final_tokens = tokens[-1] * stage.total_steps / observation.step  # tokens at the end of the stage
            lowest = float(losses[usable].min())
            predictions = [min(max(law.predict(final_tokens, stage.target_sparsity if pruning else None), 0.0),
                               lowest) for law in laws]
            fits[index] = {**laws[0].as_dict(), "predictions": predictions,
                           "prediction": float(np.mean(predictions))}
        return fits

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "ratio": self.ratio.tolist(), "ratio_start": self.ratio_start.tolist(),
                "history": self.history, "fitted": list(self.fitted),
                "static_references": None if self.static_references is None else self.static_references.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.ratio, self.ratio_start = np.asarray(state["ratio"]), np.asarray(state["ratio_start"])
        self.history = [list(row) for row in state["history"]]
        self.fitted = list(state["fitted"])
        static = state["static_references"]
        self.static_references = None if static is None else np.asarray(static)
