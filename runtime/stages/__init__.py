"""The stages a plan lists, registered by name: prune, finalize, export (recover and evaluate to come)."""

from . import export, finalize, prune  # noqa: F401  (registration)
from .base import STAGES, RunContext, Stage

__all__ = ["STAGES", "RunContext", "Stage"]
