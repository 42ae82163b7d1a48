"""The learnable masks of hard-concrete pruning, and their Lagrangian size constraint.

One log-alpha vector per kind the plan prunes (layer [L], hidden [d], kv_group [L, K] with one
value per KV group, intermediate [L, I]) and one pair of multipliers per kind. The
constraint's target for a kind is its target count over its source count, ramped from 1
over the warm-up; per-layer kinds are constrained layer by layer (Sheared-LLaMA's l0_module).
Samples and deterministic masks come out in the hooks' layout (KV-group values repeated over each
group's query heads, as `query_head`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from shearc.compiler.families import Shape
from shearc.compiler.mask_reach import mask_counts
from shearc.schedules import LOG_ALPHA_RANGE, target_fraction
from shearc.sections import HardConcretePruneSpec

from .hard_concrete import (
    Constants,
    deterministic_mask,
    init_log_alpha,
    keep_probability,
    lagrangian,
    sample,
)

ParameterCount = Callable[[dict[str, Any], Any], torch.Tensor]  # SourceModel.parameter_count: (extents, layers)


class L0Masks(nn.Module):
    def __init__(self, source: Shape, target: Shape, pruned_units: list[str], params: HardConcretePruneSpec,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.source, self.target = source, target
        self.constants = Constants.from_plan(params)
        self.soft_scale = params.soft_mask_scale
        self.kinds = list(pruned_units)
        rows = mask_counts(source)
        kept = mask_counts(target)
        self.log_alpha = nn.ParameterDict({
            kind: nn.Parameter(init_log_alpha(rows[kind], params.init_log_alpha_mean,
                                              params.init_log_alpha_std, generator))
            for kind in self.kinds})
        self.lambda_1 = nn.ParameterDict({kind: nn.Parameter(torch.zeros(())) for kind in self.kinds})
        self.lambda_2 = nn.ParameterDict({kind: nn.Parameter(torch.zeros(())) for kind in self.kinds})
        self.final_fraction = {kind: kept[kind][1] / rows[kind][1] for kind in self.kinds}
        self.keep = {kind: kept[kind][1] for kind in self.kinds}

    def _layout(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hooks' layout: 1-row kinds flattened, KV-group values repeated over their query heads."""
        out = {}
        for kind, value in values.items():
            if kind == "kv_group":
                out["query_head"] = value.repeat_interleave(self.source.group_size, dim=-1)
            else:
                out[kind] = value[0] if kind in ("layer", "hidden") else value
        return out

    def sample(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self._layout({k: sample(a, self.constants, generator) for k, a in self.log_alpha.items()})

    def expected_fractions(self) -> dict[str, torch.Tensor]:
        """Per kind, the expected kept fraction over all its rows (for logs and the eval masks' size)."""
        return {k: keep_probability(a, self.constants).mean() for k, a in self.log_alpha.items()}

    def targets(self, step: int, warmup_steps: int) -> dict[str, float]:
        return {k: target_fraction(step, warmup_steps, self.final_fraction[k]) for k in self.kinds}

    def lagrangian(self, step: int, warmup_steps: int) -> torch.Tensor:
        """Sum over kinds of the mean over rows of each row's own term: per-layer kinds (kv_group,
        intermediate) pay for every layer's gap, so layers are pushed towards the equal sizes the
        final top-k forces, not just their average towards the target."""
        targets = self.targets(step, warmup_steps)
        terms = [lagrangian(keep_probability(a, self.constants).mean(-1), targets[k], self.lambda_1[k],
                            self.lambda_2[k]).mean() for k, a in self.log_alpha.items()]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    def deterministic(self, keep: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
        """Exact masks: `keep` units per row (default: the target's), with their soft values."""
        keep = keep or self.keep
        with torch.no_grad():
            return self._layout({k: deterministic_mask(a, keep[k], self.constants, self.soft_scale)
                                 for k, a in self.log_alpha.items()})

    def expected_keep(self) -> dict[str, int]:
        """Units per row the masks would keep now: the rounded expectation, never below the target."""
        with torch.no_grad():
            fractions = self.expected_fractions()
            rows = mask_counts(self.source)
            return {k: min(rows[k][1], max(self.keep[k], round(float(fractions[k]) * rows[k][1])))
                    for k in self.kinds}

    def expected_params(self, count: ParameterCount) -> torch.Tensor:
        """Expected parameter count under the masks' keep probabilities, from the family adapter's count
        (`count`) at expected widths: per layer, kept layers x expected KV groups, intermediate and hidden
        channels. Heads are KV groups x the source's group size: under GQA k and v count KV heads, not query
        heads (the reference counts 4 x heads)."""
        probabilities = {k: keep_probability(a, self.constants) for k, a in self.log_alpha.items()}
        shape = self.source
        hidden = probabilities["hidden"].sum() if "hidden" in probabilities else torch.tensor(float(shape.hidden))
        layer = probabilities["layer"][0] if "layer" in probabilities else torch.ones(shape.layers)
        kv = probabilities["kv_group"].sum(-1) if "kv_group" in probabilities else torch.full((shape.layers,),
                                                                                      float(shape.kv_heads))
        inter = probabilities["intermediate"].sum(-1) if "intermediate" in probabilities else torch.full(
            (shape.layers,), float(shape.intermediate))
        return count(shape.expected_extents(hidden, kv, inter), layer)

    def target_params(self, count: ParameterCount) -> float:
        """The same count at the target shape, where every kept unit is kept for sure."""
        t = self.target
        layers = torch.ones(t.layers)
        return float(count(self.source.expected_extents(torch.tensor(float(t.hidden)), layers * t.kv_heads,
                                                        layers * t.intermediate), layers))

    def expected_sparsity(self, count: ParameterCount, source_params: int) -> float:
        """DRPruning's s: the expected fraction of the source's parameters removed."""
        with torch.no_grad():
            return max(0.0, 1.0 - float(self.expected_params(count)) / source_params)

    def clamp_(self) -> None:
        """Keep log-alphas in the reference's range after each step."""
        with torch.no_grad():
            for value in self.log_alpha.values():
                value.clamp_(*LOG_ALPHA_RANGE)

    def ascend_multipliers_(self) -> None:
        """Flip the multipliers' gradients so the optimizer's descent is an ascent on them."""
        for group in (self.lambda_1, self.lambda_2):
            for value in group.values():
                if value.grad is not None:
                    value.grad.neg_()
