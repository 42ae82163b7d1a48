"""What drives the mixer: per-domain eval loss, or DRPruning's EMA of per-domain training loss.

    mixer: {method: drpruning, signal: train-ema, ema_alpha: 0.1}

With `train-ema`, every optimizer step's per-domain mean training loss (summed over ranks) moves
an EMA, and the mixer reads the EMA at each eval interval instead of the eval losses; a domain not
yet drawn in training stands at its eval loss. The eval still runs, for the record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import distributed


class TrainLossEMA:
    """Per-domain EMA of the training loss. A domain's first observation starts its average (the
    reference starts from 0); domains absent from a step keep theirs."""

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
        self.values = np.array([np.nan if v is None else v for v in state["values"]], dtype=np.float64)


class MixerSignal:
    """Per-domain losses for the mixer, from the eval or (train-ema) from the steps' training losses."""

    def __init__(self, signal: str, domains: int, ema_alpha: float | None = None) -> None:
        """`signal`: the mixer's (Mixer.signal); `ema_alpha` is read when it is `train-ema`."""
        self.ema = TrainLossEMA(domains, ema_alpha) if signal == "train-ema" else None
        self._sums, self._counts = np.zeros(domains), np.zeros(domains)

    def add(self, domains: np.ndarray, losses: torch.Tensor) -> None:
        """One micro-batch's sequence losses and the domain of each sequence."""
        if self.ema is not None:
            np.add.at(self._sums, domains, losses.detach().float().cpu().numpy())
            np.add.at(self._counts, domains, 1)

    def end_step(self) -> None:
        if self.ema is None:
            return
        sums, counts = distributed.summed(self._sums), distributed.summed(self._counts)
        self.ema.update(sums / np.maximum(counts, 1), counts > 0)
        self._sums, self._counts = np.zeros_like(self._sums), np.zeros_like(self._counts)

    def discard_step(self) -> None:
        """Forget this step's losses (a skipped non-finite step must not reach the EMA)."""
        self._sums, self._counts = np.zeros_like(self._sums), np.zeros_like(self._counts)

    def losses(self, eval_losses: np.ndarray) -> np.ndarray:
        if self.ema is None:
            return eval_losses
        return np.where(np.isnan(self.ema.values), eval_losses, self.ema.values)

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.ema is None else self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.ema is not None:
            self.ema.load_state_dict(state)
