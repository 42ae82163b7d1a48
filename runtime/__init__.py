"""shearc.runtime: executes a plan (`shearc run plan.json`).

The runtime reads only the plan, never the spec, and never re-applies a default. run.py
verifies the plan and runs its stages (stages/: prune, finalize, recover, evaluate, export)
on the shared training loop (train/), with checkpoints and resume, in one process or under
torchrun (DDP or FSDP2).
"""
