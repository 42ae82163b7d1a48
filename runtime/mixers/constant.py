"""`mixer: {method: constant}`: the initial proportions throughout."""

from __future__ import annotations

from typing import Any

from .base import MIXER_IMPLEMENTATIONS, Mixer, Observation


@MIXER_IMPLEMENTATIONS.register("constant")
class ConstantMixer(Mixer):
    def update(self, observation: Observation) -> dict[str, Any]:
        return {}
