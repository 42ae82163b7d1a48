"""The prune stage: turn the plan's method into masks of the exact target shape.

    prune: {method: hard-concrete}  # masks learned with the model and a Lagrangian (mask_learning.py)
    prune: {method: taylor}       # an importance method (importance/methods.py): calibration windows from
    prune: {method: magnitude}    # the mixture, or none; scored once or in rounds

The runtime's prune methods, under the compiler's names: hard-concrete, and every importance method.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from shearc.compiler.graph import build_graph
from shearc.plan import PrunePlan
from shearc.registry import Registry

from ..data import MixtureSampler
from ..importance.methods import IMPORTANCE_METHODS
from ..importance.selection import score_and_select
from ..train.checkpoint import Checkpoint
from .base import STAGES, RunContext, Stage
from .mask_learning import learn_masks

PruneMethod = Callable[[RunContext, PrunePlan], dict[str, torch.Tensor]]


def calibration_windows(context: RunContext, count: int, seq_len: int) -> list[torch.Tensor]:
    """`count` windows of `seq_len` tokens drawn from the plan's initial mixture, reproducibly."""
    domains = context.load_domains(seq_len)
    weights = np.array([domain.weight for domain in context.plan.data.domains])
    batch = MixtureSampler(domains, seed=context.seed).next_batch(weights, count)
    return [torch.as_tensor(row, device=context.device) for row in batch.input_ids]


def scored_masks(context: RunContext, stage_plan: PrunePlan) -> dict[str, torch.Tensor]:
    """An importance method's masks. The weights stay the source's: the checkpoint holds the masks only."""
    method = IMPORTANCE_METHODS.get(stage_plan.params.method)(stage_plan.params)
    windows = [] if method.calibration is None else calibration_windows(context, *method.calibration)
    source = context.verified.source
    masks = score_and_select(context.model, source.adapter, build_graph(source), source.shape, context.target_shape,
                             method, lambda: windows, batch_size=context.plan.schedule.micro_batch)
    context.save_complete("prune", 0, None, {"masks": masks, "mixer": None})
    return masks


PRUNE_IMPLEMENTATIONS: Registry[PruneMethod] = Registry("prune method implementation")
PRUNE_IMPLEMENTATIONS.register("hard-concrete")(learn_masks)
for _name in IMPORTANCE_METHODS:
    PRUNE_IMPLEMENTATIONS.register(_name)(scored_masks)


@STAGES.register("prune")
class PruneStage(Stage):
    stage_plan: PrunePlan

    def run(self, context: RunContext) -> None:
        context.model.train()
        context.masks = PRUNE_IMPLEMENTATIONS.get(self.stage_plan.params.method)(context, self.stage_plan)
        kept = {kind: int(torch.count_nonzero(mask)) for kind, mask in context.masks.items()}
        context.metrics.write("prune", method=self.stage_plan.params.method, kept=kept)

    def restore(self, context: RunContext, checkpoint: Checkpoint) -> None:
        """The masks; and the source's weights as they trained with them, when the method trained them."""
        handed = checkpoint.trainer_state()
        context.masks, context.mixer_state = handed["masks"], handed["mixer"]
        if checkpoint.weights is not None:
            checkpoint.load_model(context.model)
            context.source_modified = True
