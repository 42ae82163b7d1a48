"""`runtime.compile: true`: the decoder blocks compiled with torch.compile before a training stage.

    with compiled(blocks, plan.runtime.compile, record):   # every block's forward (and backward) compiled in place
        train(...)                                          # the first step pays the compile time
    # eager again; record(CompileStats): graphs, graph breaks and seconds spent compiling

Blocks rather than the whole model: the blocks of a model are the same code on weights of the
same shapes, so one graph serves them all and compiling costs one block's time, whatever the
depth (torch's "regional compilation"); the loss, which runs once per forward and changes its
hooks, stays eager. Forward hooks inside a block (hard-concrete's masks, LoRA's adapters) are
traced with it. What dynamo could not trace falls back to eager per graph break, and a block whose
guards fail is compiled again as another graph; both are counted and written to metrics.jsonl, so a
plan that compiles badly says so instead of silently running eager. Inductor keeps what it built in
its on-disk cache, so a second run of the same plan compiles faster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch

COMPILE_TIMERS = ("_compile.compile_inner", "backward._backward_impl")  # dynamo's timers: forward, then backward


def compile_blocks(blocks: torch.nn.Module) -> None:
    for block in blocks:
        block.compile()


def uncompile_blocks(blocks: torch.nn.Module) -> None:
    """Eager again: what follows the stage (the finalize check, evaluation) computes as the plan's other stages do,
    without compiling graphs for hooks it changes. Module.compile() keeps its compiled call here; None undoes it."""
    for block in blocks:
        block._compiled_call_impl = None


@contextmanager
def compiled(blocks: torch.nn.Module, enabled: bool, record: Callable[[CompileStats], None]) -> Iterator[None]:
    """Within the block, `blocks` run compiled when `enabled`; at its end they are eager again and `record` gets
    what compiling them cost."""
    if not enabled:
        yield
        return
    before = CompileStats.now()
    compile_blocks(blocks)
    try:
        yield
        record(CompileStats.now().since(before))
    finally:
        uncompile_blocks(blocks)
        torch._dynamo.reset()  # the next stage's blocks compile afresh, with dynamo's whole recompile budget


@dataclass(frozen=True)
class CompileStats:
    graphs: int  # one for the blocks' forward (its backward is compiled with it); more: recompiles
    graph_breaks: int
    compile_seconds: float  # forward and backward graphs

    @classmethod
    def now(cls) -> CompileStats:
        from torch._dynamo.utils import compilation_time_metrics, counters

        seconds = sum(sum(compilation_time_metrics.get(name, [])) for name in COMPILE_TIMERS)
        return cls(graphs=counters["stats"]["unique_graphs"], graph_breaks=sum(counters["graph_break"].values()),
                   compile_seconds=seconds)

    def since(self, before: CompileStats) -> CompileStats:
        return CompileStats(self.graphs - before.graphs, self.graph_breaks - before.graph_breaks,
                            self.compile_seconds - before.compile_seconds)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)
