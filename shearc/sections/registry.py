"""The registries of method sections, keyed by the YAML method name.

The spec validates against these parameter models (no torch needed), the plan carries them,
and the runtime registers its implementations under the same names (parity-tested).
"""

from __future__ import annotations

from shearc.registry import Registry

PRUNE_METHODS: Registry[type] = Registry("prune method")
MIXERS: Registry[type] = Registry("mixer")
RECOVERIES: Registry[type] = Registry("recovery method")
RECONSTRUCTIONS: Registry[type] = Registry("reconstruction method")
