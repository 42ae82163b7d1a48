"""Learning hard-concrete masks (Sheared-LLaMA): the prune stage's `hard-concrete` method.

    prune: {method: hard-concrete, steps: 3200, mask_lr: 1.0, lagrangian_lr: 1.0}

The source model's weights train with the masks (lr), the log-alphas with mask_lr, and
the Lagrange multipliers ascend with lagrangian_lr, in one AdamW. The mixer picks each
batch's domains and is updated from per-domain eval losses measured with deterministic
masks at the currently expected size. At the end: exactly the target's units per layer, and every unit's
soft value (what reconstruction refits towards, when the plan asks for it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from shearc.compiler.mask_reach import mask_counts
from shearc.compiler.source import hf_config
from shearc.plan import PrunePlan
from shearc.report.events import mask_size_line
from shearc.sections import HardConcretePruneSpec

from .. import distributed
from ..loss import SequenceLoss, sequence_losses
from ..masks.hard_concrete import deterministic_mask, keep_probability
from ..masks.hooks import MaskHooks
from ..masks.l0 import L0Masks, ParameterCount
from .base import RunContext
from .selection import Selection
from .training import Training


class HardConcreteTask:
    def __init__(self, l0: L0Masks, hooks: MaskHooks, params: HardConcretePruneSpec, source_params: int,
                 count: ParameterCount, seed: int) -> None:
        self.l0, self.hooks, self.params = l0, hooks, params
        self.source_params, self.count = source_params, count
        self.seed = seed
        self.warmup = round(params.target_warmup_fraction * params.steps)
        self.target_sparsity = 1.0 - l0.target_params(count) / source_params

    def lm_loss(self, model: torch.nn.Module, input_ids: torch.Tensor, step: int, micro: int) -> SequenceLoss:
        """One mask sample per micro-batch, drawn from (seed, step, micro): the same on any number of ranks,
        and nothing to checkpoint."""
        device = next(iter(self.l0.log_alpha.values())).device
        generator = torch.Generator(device=device)
        generator.manual_seed(int(np.random.SeedSequence([self.seed, step, micro]).generate_state(1)[0]))
        self.hooks.values = self.l0.sample(generator)
        return sequence_losses(model, input_ids)

    def extra_loss(self, step: int) -> torch.Tensor:
        return self.l0.lagrangian(step, self.warmup)

    def before_optimizer_step(self) -> None:
        self.l0.ascend_multipliers_()

    def after_optimizer_step(self) -> None:
        self.l0.clamp_()

    @contextmanager
    def evaluation(self) -> Iterator[None]:
        self.hooks.values = self.l0.deterministic(self.l0.expected_keep())
        yield

    def sparsity(self) -> float:
        return self.l0.expected_sparsity(self.count, self.source_params)

    def state_dict(self) -> dict[str, Any]:
        return {"l0": self.l0.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.l0.load_state_dict(state["l0"])

    def log_terms(self, step: int) -> dict[str, Any]:
        with torch.no_grad():
            expected = {k: float(v) for k, v in self.l0.expected_fractions().items()}
            return {"expected_fraction": expected, "target_fraction": self.l0.targets(step, self.warmup),
                    "expected_params": float(self.l0.expected_params(self.count)),
                    "lambda_1": {k: float(v) for k, v in self.l0.lambda_1.items()},
                    "lambda_2": {k: float(v) for k, v in self.l0.lambda_2.items()}}


def mask_size(l0: L0Masks, task: HardConcreteTask) -> dict[str, Any]:
    """Where the masks' expected size ended against the target's, and how many units the exact target-shaped masks
    finalize takes (the largest log-alphas per row) decide against the masks' own keep probabilities."""
    with torch.no_grad():
        probabilities = {k: keep_probability(a, l0.constants) for k, a in l0.log_alpha.items()}
        kept = {k: deterministic_mask(a, l0.keep[k], l0.constants, l0.soft_scale) > 0 for k, a in l0.log_alpha.items()}
        return {"expected_params": float(l0.expected_params(task.count)), "target_params": l0.target_params(task.count),
                "source_params": task.source_params,
                "expected_fraction": {k: float(p.mean()) for k, p in probabilities.items()},
                "target_fraction": dict(l0.final_fraction),
                "dropped_alive": sum(int((~kept[k] & (p > 0.5)).sum()) for k, p in probabilities.items()),
                "kept_dead": sum(int((kept[k] & (p < 0.5)).sum()) for k, p in probabilities.items())}


def mask_learning_groups(model: torch.nn.Module, l0: L0Masks, params: HardConcretePruneSpec) -> list[dict[str, Any]]:
    """AdamW's three groups: the weights at lr, the log-alphas at mask_lr and the multipliers at lagrangian_lr,
    neither of the last two decayed (weight decay would pull the masks and multipliers towards zero)."""
    return [{"params": list(model.parameters()), "lr": params.lr},
            {"params": list(l0.log_alpha.parameters()), "lr": params.mask_lr, "weight_decay": 0.0},
            {"params": [*l0.lambda_1.parameters(), *l0.lambda_2.parameters()], "lr": params.lagrangian_lr,
             "weight_decay": 0.0}]


def learn_masks(context: RunContext, stage_plan: PrunePlan) -> Selection:
    plan, params = context.plan, stage_plan.params
    source = context.verified.source
    training = Training.start(context, stage_plan, sampler_seed=context.seed)
    if context.resume is not None:  # trained weights back; the loop restores the rest
        context.resume.load_model(context.model)
    context.source_modified = True  # its weights train with the masks from here on
    generator = torch.Generator().manual_seed(context.seed)
    kinds = [unit.kind for unit in plan.target.pruned_units]
    l0 = L0Masks(source.shape, context.target_shape, kinds, params, generator)
    l0.to(context.device)
    hooks = MaskHooks(context.model, source.adapter)
    model = context.model
    task = HardConcreteTask(l0, hooks, params, plan.source.model_info.params, source.parameter_count, context.seed + 1)
    try:
        training.run(context, "prune", model, model.get_submodule(source.adapter.layer_prefix),
                     lambda: mask_learning_groups(model, l0, params), task)
    finally:
        hooks.remove()
    if context.sharding and params.reconstruct is None:  # each process keeps its shards into finalize (which
        context.model = distributed.resharded_for_reading(model)  # gathers one tensor at a time); reconstruction
    else:  # refits layers of the whole model, which the prune stage shards again after it
        context.model = distributed.unsharded(model, lambda: AutoModelForCausalLM.from_config(
            hf_config(source.config)).to(context.device))
    masks = l0.deterministic()
    context.metrics.write("masks", kept={k: int(torch.count_nonzero(v)) for k, v in masks.items()},
                          final_weights=np.asarray(training.mixer.weights))
    size = mask_size(l0, task)
    context.metrics.write("mask_size", **size)
    if context.say is not None:
        context.say(f"prune: {mask_size_line(size)}")
    context.mixer_state = training.mixer.state_dict()
    every_unit = {kind: mask_counts(source.shape)[kind][1] for kind in l0.kinds}
    return Selection(masks, before=l0.deterministic(every_unit), step=training.schedule.steps)
