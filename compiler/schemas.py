"""JSON Schemas of the spec and the plan, generated from their pydantic models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shearc.canonical import pretty_json
from shearc.plan import plan_schema
from shearc.plan.model import SCHEMA_DIALECT

from .spec import Spec


def spec_schema() -> dict[str, Any]:
    return {"$schema": SCHEMA_DIALECT, **Spec.model_json_schema(mode="validation")}


def schema_files() -> dict[str, str]:
    return {"spec.schema.json": pretty_json(spec_schema()), "plan.schema.json": pretty_json(plan_schema())}


def stale_schemas(directory: Path) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    stale = []
    for name, text in schema_files().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
