"""What every spec section shares: closed, frozen, described."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        # In the plan's (serialization) schema every field is required: the runtime
        # must find each number written out, never fall back on a default.
        json_schema_serialization_defaults_required=True,
    )


class RuleError(ValueError):
    """Raised by a cross-section validator: several located problems at once.

    pydantic keeps the exception in the error's context, so the loader can report
    each (path, message) pair at its own line.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))

