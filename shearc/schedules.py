"""The arithmetic of a training stage's schedules and optimizer, shared by the runtime (which follows them) and
the compiler (which estimates from them before a run): the learning-rate multiplier, AdamW's epsilon, hard-concrete's
ramped size target and the range its log-alphas are held in."""

from __future__ import annotations

import math

LOG_ALPHA_RANGE = (math.log(1e-2), math.log(1e2))  # Sheared-LLaMA clamps log-alphas here after each step
ADAMW_EPS = 1e-8  # every AdamW of a run (torch's default); the masks' gradients are small enough for it to matter


def lr_scale(step: int, steps: int, warmup_steps: int, decay: str, min_ratio: float) -> float:
    """Multiplier of every group's peak learning rate at `step` (0-based): linear warm-up, then `decay` (cosine,
    linear or constant) down to `min_ratio` at the last step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    done = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps - 1))
    shape = 0.5 * (1 + math.cos(math.pi * done)) if decay == "cosine" else 1 - done
    return min_ratio + (1 - min_ratio) * shape


def target_fraction(step: int, warmup_steps: int, final: float) -> float:
    """Hard-concrete's constraint target, a kept fraction: 1 at step 0, `final` after the warm-up."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return final
    return 1.0 + (final - 1.0) * step / warmup_steps


def keep_shift(temperature: float, low: float, high: float) -> float:
    """P(z > 0) = sigmoid(log_alpha - keep_shift): a hard-concrete unit's chance of being kept."""
    return temperature * math.log(-low / high)
