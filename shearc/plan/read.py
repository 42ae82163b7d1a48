"""Read a plan file: JSON, the plan schema, and its own hash, each failure a UserError; then the typed plan."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from shearc.canonical import sha256_of
from shearc.errors import Problem, UserError

from .model import PLAN_VERSION, Plan, plan_schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(plan_schema())


def _deepest_branch(errors: list[ValidationError]) -> ValidationError:
    """The branch whose errors lie deepest is the one whose discriminator matched."""
    branches: dict[Any, list[ValidationError]] = {}
    for error in errors:
        branches.setdefault(error.relative_schema_path[0], []).append(error)
    chosen = max(branches.values(), key=lambda group: min(len(e.absolute_path) for e in group))
    return best_match(chosen)


def schema_problems(data: dict[str, Any], file: str) -> list[Problem]:
    """Every place the plan breaks its schema; a missing field is an error, never a default."""
    problems = []
    for error in _validator().iter_errors(data):
        while error.context:  # a oneOf over stage kinds: follow the branch that got deepest
            error = _deepest_branch(error.context)
        path = ".".join(str(p) for p in error.absolute_path)
        problems.append(Problem(error.message if len(error.message) < 200 else error.message[:197] + "...",
                                path, file))
    return problems


def read_plan(path: str | Path) -> Plan:
    """The typed plan, after checking its version, its schema and its hash."""
    file = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError([Problem("file not found", file=file)], title="cannot read plan") from None
    except (OSError, ValueError) as exc:
        raise UserError([Problem(f"not a JSON plan: {exc}", file=file)], title="cannot read plan") from None
    if not isinstance(data, dict):
        raise UserError([Problem("a plan is a JSON object", file=file)], title="invalid plan")
    version = data.get("plan_version")
    if not (isinstance(version, list) and len(version) == 2 and version[0] == PLAN_VERSION[0]):
        raise UserError([Problem(f"plan_version {version} cannot be read by this shearc (reads "
                                 f"{PLAN_VERSION[0]}.x); recompile the spec", "plan_version", file)],
                        title="incompatible plan")
    problems = schema_problems(data, file)
    if problems:
        raise UserError(problems, title="invalid plan")
    body = {k: v for k, v in data.items() if k != "plan_sha256"}
    if sha256_of(body) != data["plan_sha256"]:
        raise UserError([Problem("plan_sha256 does not match the contents: the plan was edited after compile; "
                                 "change the spec and recompile instead", "plan_sha256", file)],
                        title="invalid plan")
    return Plan.model_validate(data)
