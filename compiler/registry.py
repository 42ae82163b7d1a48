"""The compiler's registries: parameter models keyed by the YAML method name.

The compiler registers *parameter models* here (so validating a spec needs no
torch); the runtime registers implementations under the same names.
"""

from __future__ import annotations

from shearc.registry import Registry

PRUNE_METHODS: Registry[type] = Registry("prune method")
MIXERS: Registry[type] = Registry("mixer")
RECOVERIES: Registry[type] = Registry("recovery method")
