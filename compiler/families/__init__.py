"""Model families: one module per family, each registering its adapters by architecture name."""

from __future__ import annotations

from typing import Any

from shearc.errors import UserError

from . import gemma, llama, phi3, qwen3  # noqa: F401  (registration)
from .base import ADAPTERS, Axes, FamilyAdapter, Shape, follow_kept_layers


def adapter_for(config: dict[str, Any]) -> FamilyAdapter:
    architectures = config.get("architectures") or []
    for name in architectures:
        if name in ADAPTERS:
            return ADAPTERS.get(name)
    found = ", ".join(architectures) or f"none (model_type {config.get('model_type')!r})"
    raise UserError(
        f"unsupported architecture {found}; shearc supports: {', '.join(ADAPTERS.names())}",
        title="unsupported source model",
    )


__all__ = ["ADAPTERS", "Axes", "FamilyAdapter", "Shape", "adapter_for", "follow_kept_layers"]
