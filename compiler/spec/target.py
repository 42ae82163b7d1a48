"""`target:` the shape to reach, exactly or as a parameter budget.

    target: {layers: 24, hidden: 2048, heads: 16, intermediate: 5504}
    # or
    target: {params: 1.3B}
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from shearc.sections import RuleError, Section

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def _parse_count(value: object) -> object:
    """Accept 1345423360, 1.3e9 or '1.3B' / '350M'."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmbt]?)\s*", value, re.IGNORECASE)
        if not match:
            raise ValueError(f"expected a parameter count such as 1345423360, 1.3e9 or '1.3B', got {value!r}")
        return int(float(match.group(1)) * _SUFFIX[match.group(2).lower()])
    if isinstance(value, float) and not isinstance(value, bool):
        return int(value)
    return value


ParamCount = Annotated[int, BeforeValidator(_parse_count), Field(gt=0)]
_SHAPE_FIELDS = ("layers", "hidden", "heads", "kv_heads", "intermediate")


class TargetSpec(Section):
    layers: int | None = Field(None, gt=0, description="Decoder layers to keep; omitted keeps the source's.")
    hidden: int | None = Field(None, gt=0, description="Hidden (residual stream) size; omitted keeps the source's.")
    heads: int | None = Field(None, gt=0, description="Query heads per layer; omitted keeps the source's.")
    kv_heads: int | None = Field(
        None,
        gt=0,
        description="Key/value heads per layer. Omitted: the source's, except that a multi-head source stays "
        "multi-head (kv_heads follows heads).",
    )
    intermediate: int | None = Field(None, gt=0, description="MLP intermediate size; omitted keeps the source's.")
    params: ParamCount | None = Field(
        None,
        description="A parameter budget instead of a shape (all parameters, e.g. 1.3B): the compiler keeps "
        "every layer and shrinks each prunable width by one factor to the largest shape within budget.",
    )
    multiple_of: int = Field(
        64, gt=0, description="With `params`: round hidden and intermediate sizes down to a multiple of this."
    )

    @model_validator(mode="after")
    def _shape_or_budget(self) -> TargetSpec:
        given = [name for name in _SHAPE_FIELDS if getattr(self, name) is not None]
        if self.params is not None and given:
            raise RuleError([(("params",), f"give either a shape or a parameter budget, not both "
                                           f"(also given: {', '.join(given)})")])
        return self

    @property
    def is_budget(self) -> bool:
        return self.params is not None
