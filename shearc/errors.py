"""Errors shared by the compiler and the runtime.

A `UserError` means the user's input is wrong: the CLI prints its problems,
one per line, and exits with code 2 without a traceback. A `CheckFailed` means a check of
the run's output failed: printed, exit 1, no traceback. Anything else is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as we can."""

    message: str
    path: str = ""  # dotted field path, e.g. "prune.steps" or "data.domains[1].weight"
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.column) if p is not None)
        parts = [f"{where}:" if where else "", f"{self.path}:" if self.path else "", self.message]
        return " ".join(p for p in parts if p)


class CheckFailed(RuntimeError):
    """A check of what the run produced failed (exit 1): the message says what was found, what is kept and
    what to do next, so the CLI prints it without a traceback."""


class Interrupted(Exception):
    """The run stopped on request (SIGTERM/SIGINT) after saving a checkpoint: exit code 130."""


class UserError(Exception):
    """The user's input is wrong; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | str, *, title: str = "invalid input") -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = list(problems)
        self.title = title
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = f"{self.title} ({count} problem{'s' if count != 1 else ''}):"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])
