"""The stages a plan lists, registered by name: prune, finalize, recover, evaluate, export."""

from . import evaluate, export, finalize, prune, recover  # noqa: F401  (registration)
from .base import STAGES, RunContext, Stage

__all__ = ["STAGES", "RunContext", "Stage"]
