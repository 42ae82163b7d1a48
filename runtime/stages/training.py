"""What every training stage (hard-concrete pruning, recovery) wires the same way, written once.

    trainer = Training.start(context, stage_plan, sampler_seed=context.seed)   # data, sampler, mixer
    trainer.run(context, "recover", model, blocks, groups, task)               # the loop, checkpointing

Resumed from one of its own checkpoints (context.resume), a stage reloads its weights and the
loop restores the optimizer, sampler, mixer and task; started afresh, a mixer that wants the source
model's losses as its references measures them first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from shearc.plan import PrunePlan, RecoverPlan

from .. import distributed
from ..data import DomainData, MixtureSampler, domain_eval_losses
from ..mixers import Mixer, build_mixer
from ..precision import compute_autocast
from ..train.compiled import CompileStats, compiled
from ..train.loop import Schedule, Task, adamw, prepare, train
from .base import RunContext


def reference_from_source(context: RunContext, mixer: Mixer, domains: list[DomainData], schedule: Schedule) -> None:
    """`mixer.reference: source`: the source model's per-domain eval losses become the mixer's reference.

    Measured once, when a stage starts a mixer that has none (a resumed stage restores them from its
    checkpoint), on the source in memory when it is unmodified, else on the source from disk."""
    if not mixer.uses_source_reference or mixer.references is not None:
        return
    source = context.source_for_reading()
    with compute_autocast(context.plan.precision, context.device):
        losses = domain_eval_losses(source, domains, seq_len=schedule.seq_len,
                                    max_sequences=schedule.eval_sequences, batch_size=schedule.micro_batch,
                                    device=context.device)
    mixer.set_reference(losses)
    context.metrics.write("reference", source="source model", domains=mixer.names, losses=losses)


@dataclass
class Training:
    schedule: Schedule
    domains: list[DomainData]
    sampler: MixtureSampler
    mixer: Mixer

    @classmethod
    def start(cls, context: RunContext, stage_plan: PrunePlan | RecoverPlan, *, sampler_seed: int) -> Training:
        """The stage's schedule, its domains at its sequence length, this rank's sampler, and the mixer (with the
        state an earlier stage handed on, if any)."""
        schedule = Schedule.from_plan(stage_plan, context.plan)
        domains = context.load_domains(schedule.seq_len)
        sampler = MixtureSampler(domains, seed=sampler_seed, rank=distributed.rank(),
                                 world_size=distributed.world_size())
        mixer = build_mixer(context.plan)
        if context.mixer_state is not None:
            mixer.load_state_dict(context.mixer_state)
        if context.resume is None:  # a resumed stage has its mixer's references in the checkpoint
            reference_from_source(context, mixer, domains, schedule)
        return cls(schedule, domains, sampler, mixer)

    def run(self, context: RunContext, stage: str, model: torch.nn.Module, blocks: torch.nn.Module,
            groups: Callable[[], list[dict[str, Any]] | list[torch.nn.Parameter]], task: Task, *,
            restart_mixer: bool = False) -> None:
        """Train `model` (its decoder blocks `blocks` sharded under FSDP2) with AdamW over `groups()`, which is
        called after wrapping: FSDP2 replaces the parameters it shards."""
        plan = context.plan
        prepare(model, plan.schedule)
        replicated = distributed.wrap(model, context.device, plan.runtime.strategy, blocks)
        optimizer = adamw(groups(), plan.schedule, context.device)

        def record(stats: CompileStats) -> None:  # run.py prints it with the stage
            context.compiled = stats
            context.metrics.write("compile", stage=stage, **stats.as_dict())

        with compiled(blocks, plan.runtime.compile, record):
            train(stage=stage, model=model, optimizer=optimizer, schedule=self.schedule, sampler=self.sampler,
                  mixer=self.mixer, eval_domains=self.domains, task=task, metrics=context.metrics,
                  device=context.device, restart_mixer=restart_mixer, saving=context.saving(), resume=context.resume,
                  replicated=replicated)
