"""`mixer: {method: dynamic-batch-loading, eta: 1.0, smoothing: 1e-4}` (Sheared-LLaMA).

Every eval: w <- softmax(log w + eta * (L_eval - L_ref)), then w <- (1 - c) w + c / k.
Like the reference, the excess is not clipped at zero: a domain below its reference
gives weight back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax

from .base import MIXER_IMPLEMENTATIONS, Mixer, Observation


def dynamic_batch_loading_update(weights: np.ndarray, losses: np.ndarray, references: np.ndarray, *, eta: float,
                                 smoothing: float) -> np.ndarray:
    moved = softmax(np.log(weights) + eta * (np.asarray(losses) - np.asarray(references)))
    smoothed = (1 - smoothing) * moved + smoothing / len(weights)
    return smoothed / smoothed.sum()


@MIXER_IMPLEMENTATIONS.register("dynamic-batch-loading")
class DynamicBatchLoadingMixer(Mixer):
    @property
    def uses_source_reference(self) -> bool:
        return self.params.reference == "source"

    def update(self, observation: Observation) -> dict[str, Any]:
        references = self._require_references()
        self._weights = dynamic_batch_loading_update(self._weights, observation.losses, references,
                                                     eta=self.params.eta, smoothing=self.params.smoothing)
        return {"reference_losses": references, "excess": observation.losses - references}
