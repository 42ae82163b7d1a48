"""A tiny pass manager: each pass states what it needs and what it provides.

A pass returns the problems it found; the manager places each at its line in the
spec and names the failing pass in the error's title.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from shearc.errors import Problem, UserError

from .yaml_source import LoadedYaml, PathKey


@dataclass(frozen=True)
class Pass:
    name: str
    requires: tuple[str, ...]
    provides: tuple[str, ...]
    run: Callable[[Any], list[Problem]]


def parse_dotted(path: str) -> PathKey:
    """'data.domains[1].weight' -> ('data', 'domains', 1, 'weight')."""
    out: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        out.append(int(index) if index else name)
    return tuple(out)


def locate(problem: Problem, loaded: LoadedYaml) -> Problem:
    if problem.file is not None:
        return problem
    line, column = loaded.locate(parse_dotted(problem.path)) if problem.path else loaded.locate(())
    return replace(problem, file=loaded.file, line=line, column=column)


def run_passes(passes: list[Pass], context: Any, loaded: LoadedYaml) -> None:
    for step in passes:
        missing = [name for name in step.requires if getattr(context, name, None) is None]
        if missing:  # a pipeline ordering bug, not a user error
            raise AssertionError(f"pass {step.name} needs {missing}, which no earlier pass provided")
        try:
            problems = step.run(context)
        except UserError as exc:
            problems = exc.problems
            title = exc.title
        else:
            title = "cannot compile"
        if problems:
            raise UserError([locate(p, loaded) for p in problems], title=f"{title} (pass {step.name})")
        absent = [name for name in step.provides if getattr(context, name, None) is None]
        if absent:
            raise AssertionError(f"pass {step.name} did not provide {absent}")
