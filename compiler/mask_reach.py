"""Whether a hard-concrete stage's steps and learning rates can bring its masks' expected size to the target, told
before the run spends its time.

    prune: {method: hard-concrete, steps: 20}   # compile: "prune: 20 hard-concrete steps cannot bring ..."

What governs it is the Lagrangian's build-up. Its multipliers start at zero and AdamW moves them by about
lagrangian_lr x the schedule's scale a step, while the target ramps down over target_warmup_fraction of the steps;
the log-alphas start at init_log_alpha_mean, where every unit is kept, and each moves by at most mask_lr x the scale
a step, and only once the multipliers pull. A bound from the learning rates alone (every log-alpha falling at full
rate from the first step) calls 20 steps enough for SmolLM2-135M at the real-model tier's target; the run ended at
128M expected parameters against 86M.

The estimate plays that game for each mask kind, one log-alpha standing for all of the kind's units (they start
equal, and the Lagrangian pulls each alike): the multipliers and the log-alpha under AdamW as the run's mask groups
have it (the plan's betas, ADAMW_EPS, no weight decay), the stage's learning-rate schedule, the target's ramp and
the log-alphas' clamp. It leaves out the LM loss, and all it leaves out slows a real run: the loss's gradient holds
useful units up and its noise shrinks Adam's steps, and gradient clipping shrinks the masks' gradients towards
Adam's epsilon. So a stage the estimate says falls short falls short; one it passes can still fall short on a
model whose loss resists, and the end of pruning says so (`shearc.report.events.mask_size_line`).
docs/BENCHMARKS.md has it against runs: the embedded model and SmolLM2-135M at several lengths, and Gemma 3 270M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shearc.schedules import ADAMW_EPS, LOG_ALPHA_RANGE, keep_shift, lr_scale, target_fraction
from shearc.sections import HardConcretePruneSpec, ScheduleSpec

from .families import Shape
from .source import SourceModel

MASK_KINDS = ("layer", "hidden", "kv_group", "intermediate")
LONGEST_SEARCHED = 64  # the steps suggested are searched up to this many times the stage's


def mask_counts(shape: Shape) -> dict[str, tuple[int, int]]:
    """Hard-concrete mask kind -> (rows, units per row): one row for layers and hidden channels, one per layer for
    KV groups and intermediate channels (each layer is constrained to the target on its own)."""
    return {"layer": (1, shape.layers), "hidden": (1, shape.hidden), "kv_group": (shape.layers, shape.kv_heads),
            "intermediate": (shape.layers, shape.intermediate)}


@dataclass(frozen=True)
class KindReach:
    target: float  # the kept fraction the target shape asks of this kind
    lowest: float  # the lowest expected kept fraction the estimate reaches
    reached_at: int | None  # the first step whose expected fraction is at or below the target; None: never


def play(params: HardConcretePruneSpec, schedule: ScheduleSpec, rows_units: tuple[int, int], target: float,
         steps: int) -> KindReach:
    """One kind's Lagrangian game over `steps` without the LM loss (the module's docstring says why that is a bound)."""
    rows, units = rows_units
    low, high = LOG_ALPHA_RANGE
    shift = keep_shift(params.temperature, params.stretch_low, params.stretch_high)
    ramp = round(params.target_warmup_fraction * steps)
    beta1, beta2 = schedule.betas
    log_alpha, multipliers = min(high, max(low, params.init_log_alpha_mean)), [0.0, 0.0]
    first, second = [0.0] * 3, [0.0] * 3
    lowest, reached_at = 1.0, None
    for step in range(steps):
        keep = 1 / (1 + math.exp(-(log_alpha - shift)))
        gap = keep - target_fraction(step, ramp, target)
        pull = (multipliers[0] + 2 * multipliers[1] * gap) * keep * (1 - keep) / (rows * units)
        gradients = (pull, -gap, -gap * gap)  # the multipliers ascend: their gradients are flipped
        moves = []
        for i, gradient in enumerate(gradients):
            first[i] = beta1 * first[i] + (1 - beta1) * gradient
            second[i] = beta2 * second[i] + (1 - beta2) * gradient * gradient
            corrected = math.sqrt(second[i] / (1 - beta2 ** (step + 1)))
            moves.append(first[i] / (1 - beta1 ** (step + 1)) / (corrected + ADAMW_EPS))
        scale = lr_scale(step, steps, params.warmup_steps, schedule.lr_decay, schedule.min_lr_ratio)
        log_alpha = min(high, max(low, log_alpha - params.mask_lr * scale * moves[0]))
        multipliers = [m - params.lagrangian_lr * scale * move for m, move in zip(multipliers, moves[1:], strict=True)]
        keep = 1 / (1 + math.exp(-(log_alpha - shift)))
        lowest = min(lowest, keep)
        if reached_at is None and keep <= target:
            reached_at = step + 1
    return KindReach(target, lowest, reached_at)


@dataclass(frozen=True)
class Reach:
    steps: int
    kinds: dict[str, KindReach]

    @property
    def short(self) -> dict[str, KindReach]:
        return {kind: reach for kind, reach in self.kinds.items() if reach.reached_at is None}


def estimate(params: HardConcretePruneSpec, schedule: ScheduleSpec, source: Shape, target: Shape, kinds: list[str],
             steps: int | None = None) -> Reach:
    """Each pruned kind's game over the stage's steps (or `steps`)."""
    steps = steps or params.steps
    have, keep = mask_counts(source), mask_counts(target)
    return Reach(steps, {kind: play(params, schedule, have[kind], keep[kind][1] / have[kind][1], steps)
                         for kind in kinds})


def expected_params(source: SourceModel, fractions: dict[str, float]) -> float:
    """The source's parameter count with each kind's units kept at `fractions` (1 where absent), as the runtime's
    L0Masks.expected_params counts them."""
    shape = source.shape
    kept = {kind: fractions.get(kind, 1.0) for kind in MASK_KINDS}
    extents = shape.expected_extents(kept["hidden"] * shape.hidden, kept["kv_group"] * shape.kv_heads,
                                     kept["intermediate"] * shape.intermediate)
    return float(source.parameter_count(extents, np.full(shape.layers, kept["layer"])))


def steps_that_reach(params: HardConcretePruneSpec, schedule: ScheduleSpec, source: Shape, target: Shape,
                     kinds: list[str]) -> int | None:
    """The fewest steps (within LONGEST_SEARCHED times the stage's) whose game reaches every kind's target: doubled
    until one does, then halved back."""
    def reaches(steps: int) -> bool:
        return not estimate(params, schedule, source, target, kinds, steps).short

    short, enough = params.steps, params.steps * 2
    while not reaches(enough):
        if enough >= params.steps * LONGEST_SEARCHED:
            return None
        short, enough = enough, enough * 2
    while enough - short > 1:
        middle = (short + enough) // 2
        short, enough = (short, middle) if reaches(middle) else (middle, enough)
    return enough


def short_of_target(params: HardConcretePruneSpec, schedule: ScheduleSpec, source: SourceModel, target: Shape,
                    kinds: list[str]) -> list[str]:
    """A warning, with the estimate's numbers, when the stage cannot bring every pruned kind to its target."""
    reach = estimate(params, schedule, source.shape, target, kinds)
    short = reach.short
    if not short:
        return []
    # the short kinds at their lowest and every other kind at its target: the smallest size the estimate allows
    lowest = expected_params(source, {kind: r.lowest if kind in short else r.target for kind, r in reach.kinds.items()})
    # count_params, without importing .shape: it brings the spec, and the runtime imports this module (mask_counts)
    wanted = source.parameter_count(target.extents(source.vocab), target.layers)
    fractions = ", ".join(f"{kind} {r.lowest:.2f} of its units against {r.target:.2f}" for kind, r in short.items())
    enough = steps_that_reach(params, schedule, source.shape, target, kinds)
    advice = (f"It would take at least {enough:,} steps at these rates (a bound: real runs need more, "
              "docs/BENCHMARKS.md)" if enough else
              f"Not even {LONGEST_SEARCHED} times the steps would reach it at these rates")
    return [f"prune: {params.steps:,} hard-concrete steps cannot bring the masks to the target: even with nothing "
            f"holding units back, the multipliers (lagrangian_lr {params.lagrangian_lr:g}) and the log-alphas (mask_lr "
            f"{params.mask_lr:g}, from {params.init_log_alpha_mean:g}) keep at best {fractions}, an expected "
            f"{lowest / 1e6:,.1f}M parameters against the target's {wanted / 1e6:,.1f}M; a real model's loss holds "
            f"units back further, and finalize cuts to the target by the masks' ranking regardless. {advice}: raise "
            f"prune.steps, or prune.mask_lr and prune.lagrangian_lr"]
