"""The training loop, shared by every stage that trains.

    for step in range(steps):
        set the learning rate (linear warm-up, then cosine/linear/constant decay to a floor)
        draw the global batch by the mixer's weights; forward and backward each micro-batch
        (train-ema: the per-domain training losses move the mixer's signal)
        add the task's extra loss (e.g. the Lagrangian) once; clip; step
        every eval interval: per-domain eval loss, mixer update
        every checkpoint interval, or when asked to stop (SIGTERM/SIGINT): checkpoint
        log to metrics.jsonl; show progress

A `Task` adds what a stage needs around the plain LM loss (masks, constraints).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from shearc import schedules
from shearc.errors import Interrupted, Problem, UserError
from shearc.plan import Plan, PrecisionPlan, PrunePlan, RecoverPlan
from shearc.sections import ScheduleSpec

from .. import distributed
from ..data import DomainData, MixtureSampler, domain_eval_losses
from ..loss import SequenceLoss
from ..metrics import MetricsLog
from ..mixers import Mixer, Observation, StageInfo, log_stage_start, update_and_log
from ..precision import compute_autocast
from .checkpoint import Checkpoint, Checkpoints, rng_state, set_rng_state
from .signal import MixerSignal
from .stop import stop_requested


@dataclass(frozen=True)
class Saving:
    """Where and how often a stage's loop checkpoints."""

    checkpoints: Checkpoints
    stage_index: int
    interval: int
    checks: dict[str, Any]  # carried along, for the model card of a resumed run


@dataclass(frozen=True)
class Schedule:
    steps: int
    global_batch: int
    seq_len: int
    lr: float
    warmup_steps: int
    eval_interval: int
    micro_batch: int
    lr_decay: str
    min_lr_ratio: float
    grad_clip: float
    eval_sequences: int
    precision: PrecisionPlan  # what to autocast to on a CPU and on CUDA
    on_nonfinite: str = "stop"  # or "skip": what a step with a NaN or infinite loss or gradient norm does
    max_skipped_steps: int = 10
    divergence_rise: float | None = None  # a loss this far above the stage's first step's is handled the same way,
    uniform_loss: float = 0.0  # when it is also above a uniform guess over the vocabulary (ln V)

    @classmethod
    def from_plan(cls, stage: PrunePlan | RecoverPlan, plan: Plan) -> Schedule:
        """A training stage's schedule: its own section's length and learning rate, the plan's optimizer settings."""
        params, schedule = stage.params, plan.schedule
        return cls(params.steps, params.global_batch, params.seq_len, params.lr, params.warmup_steps,
                   params.eval_interval, schedule.micro_batch, schedule.lr_decay, schedule.min_lr_ratio,
                   schedule.grad_clip, stage.eval_sequences, plan.precision, plan.runtime.on_nonfinite,
                   plan.runtime.max_skipped_steps, plan.runtime.divergence_rise,
                   math.log(plan.source.fingerprint_fields["vocab_size"]))


def lr_scale(step: int, schedule: Schedule) -> float:
    """Multiplier of every group's peak learning rate at `step` (0-based)."""
    return schedules.lr_scale(step, schedule.steps, schedule.warmup_steps, schedule.lr_decay, schedule.min_lr_ratio)


class Task(Protocol):
    target_sparsity: float | None

    def lm_loss(self, model: torch.nn.Module, input_ids: torch.Tensor, step: int, micro: int) -> SequenceLoss:
        """The loss to train on and each sequence's mean token loss (runtime/loss.py). `micro` numbers the
        micro-batch within the global batch, the same for any number of ranks."""
    def extra_loss(self, step: int) -> torch.Tensor | None: ...
    def before_optimizer_step(self) -> None: ...
    def after_optimizer_step(self) -> None: ...
    def evaluation(self) -> Any: ...  # a context manager for the per-domain eval
    def sparsity(self) -> float | None: ...
    def log_terms(self, step: int) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...



class PlainTask:
    """A Task with nothing around its loss: no extra term, no optimizer hooks, no state of its own. Subclasses
    write `lm_loss` (and `log_terms` if they log anything)."""

    target_sparsity = None

    def extra_loss(self, step: int) -> None:
        return None

    def before_optimizer_step(self) -> None:
        pass

    def after_optimizer_step(self) -> None:
        pass

    def evaluation(self) -> Any:
        return nullcontext()

    def sparsity(self) -> None:
        return None

    def log_terms(self, step: int) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch has a fused AdamW kernel


def adamw(groups: list[dict[str, Any]] | list[torch.nn.Parameter], schedule: ScheduleSpec, device: torch.device,
          fused: bool = True, **kwargs: Any) -> torch.optim.AdamW:
    """AdamW with the plan's betas and weight decay: one fused kernel over all parameters where torch has one for
    the device (on this machine's CPU it takes a fifth of the per-tensor loop's time: docs/BENCHMARKS.md), else
    torch's default for the device (`fused=False` asks for that too)."""
    fused = fused and device.type in FUSED_ADAMW_DEVICES
    return torch.optim.AdamW(groups, betas=tuple(schedule.betas), eps=schedules.ADAMW_EPS,
                             weight_decay=schedule.weight_decay, fused=fused or None, **kwargs)


def prepare(model: torch.nn.Module, schedule: ScheduleSpec) -> None:
    """Activation checkpointing when the plan asks (recompute in backward, to save memory)."""
    if schedule.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def train(*, stage: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule,
          sampler: MixtureSampler, mixer: Mixer, eval_domains: list[DomainData], task: Task, metrics: MetricsLog,
          device: torch.device, restart_mixer: bool = False, saving: Saving | None = None,
          resume: Checkpoint | None = None, replicated: torch.nn.Module | None = None) -> None:
    """`replicated` is what forward runs through (distributed.wrap's result, made before the optimizer)."""
    world_size = distributed.world_size()
    per_step = schedule.micro_batch * world_size
    if schedule.global_batch % per_step:
        raise ValueError(f"global batch {schedule.global_batch} does not split into micro-batches of "
                         f"{schedule.micro_batch} on {world_size} processes")
    autocast = compute_autocast(schedule.precision, device)  # over fp32 master weights
    peaks = [group["lr"] for group in optimizer.param_groups]
    started_as = StageInfo(stage, schedule.steps, task.target_sparsity)
    mixer.start_stage(started_as, restart_weights=restart_mixer)
    signal = MixerSignal(mixer.signal, len(mixer.names),
                         mixer.params.ema_alpha if mixer.signal == "train-ema" else None)
    first, first_loss = 0, None  # the stage's first step's loss: the divergence guard's reference
    if resume is not None:  # the caller restored the weights; the rest of the loop's state is here
        state = resume.trainer_state()
        first_loss = state.get("first_loss")  # absent from checkpoints older than the guard: the next step's
        if resume.sharded is not None:  # each rank reads its shards of the optimizer's state
            distributed.load_sharded_optimizer(resume.sharded, model, optimizer)
        else:
            optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        mixer.load_state_dict(state["mixer"])
        task.load_state_dict(state["task"])
        signal.load_state_dict(state["signal"])
        set_rng_state(state["rng"])
        first = resume.step
    else:  # a resumed stage's start is in metrics.jsonl already
        log_stage_start(mixer, started_as, metrics, restart_weights=restart_mixer)
    model.train()
    started, tokens = time.perf_counter(), 0
    replicated = replicated if replicated is not None else model
    sharded = any(distributed.is_sharded(p) for p in model.parameters())
    model_params = {id(p) for p in model.parameters()}
    outside = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in model_params]

    def checkpoint(step: int) -> None:
        trainer = {"sampler": sampler.state_dict(), "mixer": mixer.state_dict(), "task": task.state_dict(),
                   "signal": signal.state_dict(), "rng": rng_state(), "first_loss": first_loss}
        if sharded:  # under FSDP2 every rank writes its own shards of the weights and the optimizer
            saving.checkpoints.save_sharded(stage=stage, stage_index=saving.stage_index, step=step, model=model,
                                            optimizer=optimizer, trainer=trainer, checks=saving.checks)
        else:
            saving.checkpoints.save(stage=stage, stage_index=saving.stage_index, step=step, complete=False,
                                    model=model, trainer={**trainer, "optimizer": optimizer.state_dict()},
                                    checks=saving.checks)
        metrics.write("checkpoint", stage=stage, step=step)

    skipped = 0  # non-finite steps in a row
    with _progress(stage, schedule.steps, first) as advance:
        for step in range(first, schedule.steps):
            scale = lr_scale(step, schedule)
            for group, peak in zip(optimizer.param_groups, peaks, strict=True):
                group["lr"] = peak * scale
            batch = sampler.next_batch(mixer.weights, schedule.global_batch)
            ids = torch.as_tensor(batch.input_ids, device=device)
            optimizer.zero_grad(set_to_none=True)
            lm = torch.zeros((), device=device)  # summed on the device: read once per step, with the norm
            micro_batches = ids.split(schedule.micro_batch)
            for index, micro in enumerate(micro_batches):
                with autocast:
                    number = distributed.rank() * len(micro_batches) + index
                    sequences = task.lm_loss(replicated, micro, step, number)
                    loss = sequences.mean * len(micro) / len(ids)
                loss.backward()
                lm += loss.detach().float()
                start = index * schedule.micro_batch
                signal.add(batch.domains[start:start + len(micro)], sequences.rows)
            extra = task.extra_loss(step)
            if extra is not None:
                extra.backward()
            distributed.average_gradients(outside)  # masks and multipliers: DDP does not see them
            task.before_optimizer_step()
            norm = distributed.clip_gradients([p for g in optimizer.param_groups for p in g["params"]],
                                              schedule.grad_clip)
            lm, norm = torch.stack([lm, norm.to(lm.device, torch.float32)]).tolist()  # the step's one sync
            lm = float(distributed.summed(np.array([lm]))[0]) / world_size  # every rank judges the same loss
            if first_loss is None and math.isfinite(lm):
                first_loss = lm
            rise = schedule.divergence_rise
            bound = None if rise is None or first_loss is None else max(first_loss + rise, schedule.uniform_loss)
            if math.isfinite(norm) and (bound is None or lm <= bound):  # norm: global, a NaN anywhere reaches it
                skipped = 0
                signal.end_step()
                optimizer.step()
                task.after_optimizer_step()
            else:  # the update is not applied (or the run stops here)
                skipped = bad_step(stage, step, lm, norm, bound, first_loss, schedule, mixer, metrics, saving,
                                   skipped)
                signal.discard_step()
                optimizer.zero_grad(set_to_none=True)
            tokens += ids.numel() * world_size
            elapsed = time.perf_counter() - started
            metrics.write("train", stage=stage, step=step + 1, loss=lm, lr_scale=scale, grad_norm=norm,
                          tokens_per_second=tokens / elapsed, **task.log_terms(step))
            if (step + 1) % schedule.eval_interval == 0 or step + 1 == schedule.steps:
                # eager even where the blocks are compiled: evals' window lengths and masks would each want a graph
                with task.evaluation(), autocast, torch.compiler.set_stance("force_eager"):
                    losses = domain_eval_losses(model, eval_domains, seq_len=schedule.seq_len,
                                                max_sequences=schedule.eval_sequences,
                                                batch_size=schedule.micro_batch, device=device)
                model.train()
                update_and_log(mixer, Observation(step + 1, signal.losses(losses), sampler.tokens.astype(float),
                                                  task.sparsity()), metrics, eval_losses=losses)
                mixer.adopt(distributed.from_main(mixer.weights))  # one decision for every rank
            advance(f"loss {lm:.3f}  {tokens / elapsed:,.0f} tok/s  weights "
                    + " ".join(f"{w:.2f}" for w in mixer.weights))
            done = step + 1
            if saving is not None and done < schedule.steps and (done % saving.interval == 0 or stop_requested()):
                checkpoint(done)
            if stop_requested():
                raise Interrupted(f"stopped after step {done} of {stage}; run the plan again to resume")
    optimizer.zero_grad(set_to_none=True)  # the last step's gradients: as large as the model, needed by no one


LOG = logging.getLogger(__name__)  # shearc's own warnings reach the console (runtime/output.py)
DIVERGED_IN_A_ROW = 3  # under `stop`: a diverged loss stops the run once it persists this many steps


def bad_step(stage: str, step: int, loss: float, norm: float, bound: float | None, first_loss: float | None,
             schedule: Schedule, mixer: Mixer, metrics: MetricsLog, saving: Saving | None, skipped: int) -> int:
    """A step whose loss or gradient norm is NaN or infinite, or whose loss is above the divergence bound (the
    stage's first loss + runtime.divergence_rise, or a uniform guess's ln V where that is higher): its update is not
    applied. Under `skip`, counted and logged, and the number in a row returned, until more than max_skipped_steps in
    a row end the run. Under `stop`, a non-finite step ends the run (exit 2, saying where and from which checkpoint
    to go on); a diverged one does when it is the DIVERGED_IN_A_ROW-th in a row, and before that it is dropped like a
    skipped one: a single sampled mask can send one hard-concrete step's loss far above the rest (Gemma 3, 16.6
    nats among 4-7; docs/RELIABILITY.md), a learning rate 1,000 times too high sends every step there. No
    checkpoint holds a bad step's update, so none is of a diverged model and none rotates a good one away for one."""
    skipped += 1
    finite = math.isfinite(loss) and math.isfinite(norm)
    goes_on = (skipped <= schedule.max_skipped_steps if schedule.on_nonfinite == "skip"
               else finite and skipped < DIVERGED_IN_A_ROW)
    if finite:
        metrics.write("diverged", stage=stage, step=step + 1, loss=loss, bound=bound, first_loss=first_loss,
                      rise=schedule.divergence_rise, uniform_loss=schedule.uniform_loss, skipped_in_a_row=skipped,
                      policy=schedule.on_nonfinite, stopped=not goes_on)
    else:
        metrics.write("nonfinite", stage=stage, step=step + 1, loss=loss, grad_norm=norm, skipped_in_a_row=skipped,
                      policy=schedule.on_nonfinite, stopped=not goes_on)
    if goes_on:
        if distributed.is_main():
            seen = f"loss {loss:.3f} above the divergence bound {bound:.3f}" if finite else f"loss {loss}, gradient " \
                f"norm {norm}"
            LOG.warning(f"{stage} step {step + 1}: {seen}; its update is not applied ({skipped} in a row)")
        return skipped
    latest = saving.checkpoints.latest() if saving is not None else None
    mix = ", ".join(f"{name} {weight:.3f}" for name, weight in zip(mixer.names, mixer.weights, strict=True))
    if schedule.on_nonfinite == "skip":
        why = f"{skipped} steps in a row (runtime.max_skipped_steps: {schedule.max_skipped_steps})"
    elif finite:
        why = f"{skipped} steps in a row above it (runtime.on_nonfinite: stop)"
    else:
        why = "runtime.on_nonfinite: stop"
    what = (f"the loss is {loss:.3f}, more than runtime.divergence_rise ({schedule.divergence_rise:g} nats) above "
            f"the stage's first loss ({first_loss:.3f}) and above a uniform guess over the vocabulary "
            f"({schedule.uniform_loss:.3f}): it diverged" if finite
            else f"the loss is {loss} and the gradient norm {norm}")
    raise UserError([Problem(
        f"{stage} step {step + 1} of {schedule.steps}: {what}; stopped after {why}. Domain weights: {mix}. The last "
        f"good checkpoint is {latest.path.name if latest is not None else 'none (the stage starts over)'}: lower the "
        "learning rate or fix the data, then run the plan again to resume from it, or set runtime.on_nonfinite: skip "
        "to drop such steps", "runtime.divergence_rise" if finite else "runtime.on_nonfinite")],
        title="diverged loss" if finite else "non-finite loss")


@contextmanager
def _progress(stage: str, steps: int, done: int) -> Iterator[Any]:
    with Progress(TextColumn(f"{stage}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), disable=not sys.stderr.isatty(), transient=False) as progress:
        task = progress.add_task("", total=steps, completed=done)

        def advance(description: str) -> None:
            progress.update(task, advance=1, description=description)

        yield advance
