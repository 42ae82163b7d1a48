"""shearc.runtime: executes a plan (`shearc run plan.json`).

The runtime reads only the plan, never the spec, and never re-applies a default.
Its stages (prune, finalize, recover, evaluate, export) arrive with the runtime issues.
"""
