"""Hard-concrete L0 masks (Louizos et al., 2018) as Sheared-LLaMA uses them: pure tensor functions.

    prune: {method: hard-concrete, temperature: 0.6667, stretch_low: -0.1, stretch_high: 1.1}

- training sample: u ~ U(eps, 1 - eps); s = sigmoid((log u - log(1 - u) + log_alpha) / beta);
  z = clamp(s * (r - l) + l, 0, 1)
- P(z > 0) = sigmoid(log_alpha - beta * log(-l / r))
- at the end: exactly `keep` units with the largest log_alpha per row, carrying
  sigmoid(log_alpha / beta * soft_scale); the rest are 0.
- the size constraint: lambda_1 (s_hat - t) + lambda_2 (s_hat - t)^2 for each row's expected
  kept fraction s_hat (each layer's, for head and intermediate masks), averaged over rows, with the
  target t ramped linearly from 1 to the target fraction over the warm-up; the lambdas are maximised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shearc.schedules import LOG_ALPHA_RANGE, keep_shift
from shearc.sections import HardConcretePruneSpec


@dataclass(frozen=True)
class Constants:
    temperature: float = 2 / 3
    low: float = -0.1
    high: float = 1.1
    epsilon: float = 1e-6

    @classmethod
    def from_plan(cls, params: HardConcretePruneSpec) -> Constants:
        return cls(params.temperature, params.stretch_low, params.stretch_high, params.epsilon)


def init_log_alpha(shape: tuple[int, ...], mean: float, std: float, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    values = torch.randn(shape, generator=generator) * std + mean
    return values.clamp(*LOG_ALPHA_RANGE)


def sample(log_alpha: torch.Tensor, constants: Constants, generator: torch.Generator | None = None) -> torch.Tensor:
    """A differentiable training sample in [0, 1], exactly 0 or 1 with positive probability."""
    eps = constants.epsilon
    u = torch.rand(log_alpha.shape, generator=generator, device=log_alpha.device).mul(1 - 2 * eps).add(eps)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / constants.temperature)
    return (s * (constants.high - constants.low) + constants.low).clamp(0.0, 1.0)


def keep_probability(log_alpha: torch.Tensor, constants: Constants) -> torch.Tensor:
    """P(z > 0) for each unit."""
    return torch.sigmoid(log_alpha - keep_shift(constants.temperature, constants.low, constants.high))


def deterministic_mask(log_alpha: torch.Tensor, keep: int, constants: Constants, soft_scale: float) -> torch.Tensor:
    """Exactly `keep` nonzero units per row (the last dimension), with their soft values."""
    if not 0 < keep <= log_alpha.shape[-1]:
        raise ValueError(f"cannot keep {keep} of {log_alpha.shape[-1]} units")
    top = torch.topk(log_alpha, keep, dim=-1).indices
    kept = torch.zeros_like(log_alpha, dtype=torch.bool).scatter(-1, top, True)
    soft = torch.sigmoid(log_alpha / constants.temperature * soft_scale)
    return torch.where(kept, soft, torch.zeros_like(soft))


def lagrangian(expected: torch.Tensor, target: float, lambda_1: torch.Tensor, lambda_2: torch.Tensor
               ) -> torch.Tensor:
    """Added to the LM loss, elementwise over `expected`; masks descend on it, the lambdas ascend (their
    gradient is flipped)."""
    gap = expected - target
    return lambda_1 * gap + lambda_2 * gap * gap
