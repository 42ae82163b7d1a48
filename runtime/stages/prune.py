"""The prune stage: turn the plan's method into masks of the exact target shape.

    prune: {method: hard-concrete}  # masks learned with the model and a Lagrangian (mask_learning.py)
    prune: {method: taylor}       # an importance method (importance/methods.py): calibration windows from
    prune: {method: magnitude}    # the mixture, or none; scored once or in rounds
    prune: {method: taylor, reconstruct: {method: least-squares}}  # then refit what reads pruned channels

The runtime's prune methods, under the compiler's names: hard-concrete, and every importance method. Each
returns its Selection; the stage then refits (reconstruction.py) when the plan says so, and ends with one
complete checkpoint: the masks, and the weights when they are no longer the source's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from shearc.compiler.graph import build_graph
from shearc.plan import PrunePlan
from shearc.registry import Registry
from shearc.sections import LeastSquaresReconstruction

from ..data import MixtureSampler
from ..distributed import any_sharded, shard_for_reading
from ..importance.methods import IMPORTANCE_METHODS
from ..importance.selection import score_and_select
from ..reconstruction import reconstruct
from ..train.checkpoint import Checkpoint
from .base import STAGES, RunContext, Stage
from .mask_learning import learn_masks
from .selection import Selection

PruneMethod = Callable[[RunContext, PrunePlan], Selection]


CALIBRATION_POOL = 16  # calibration draws its windows from the files holding at least 16 times as many


def calibration_windows(context: RunContext, count: int, seq_len: int) -> list[torch.Tensor]:
    """`count` windows of `seq_len` tokens drawn from the plan's initial mixture, reproducibly; a domain's files
    are tokenized in order only until they hold CALIBRATION_POOL times the windows drawn (data/domains.py)."""
    domains = context.load_domains(seq_len, head=CALIBRATION_POOL * count * seq_len)
    weights = np.array([domain.weight for domain in context.plan.data.domains])
    batch = MixtureSampler(domains, seed=context.seed).next_batch(weights, count)
    return [torch.as_tensor(row, device=context.device) for row in batch.input_ids]


def scored_masks(context: RunContext, stage_plan: PrunePlan) -> Selection:
    """An importance method's binary masks; the weights stay the source's."""
    method = IMPORTANCE_METHODS.get(stage_plan.params.method)(stage_plan.params)
    windows = [] if method.calibration is None else calibration_windows(context, *method.calibration)
    source = context.verified.source
    masks = score_and_select(context.model, source.adapter, build_graph(source), source.shape, context.target_shape,
                             method, lambda: windows, batch_size=context.plan.schedule.micro_batch)
    return Selection(masks)


def least_squares(context: RunContext, params: LeastSquaresReconstruction, selection: Selection) -> None:
    """Reconstruction (reconstruction.py) of `context.model` under the selection's masks, logged per projection."""
    source = context.verified.source
    windows = calibration_windows(context, params.calibration_samples, params.calibration_seq_len)
    refits = reconstruct(context.model, source.adapter, source.shape, selection.masks, windows,
                         damping=params.damping, batch_size=context.plan.schedule.micro_batch,
                         reference=selection.before)
    context.source_modified = True
    before, after = sum(r.error_before for r in refits), sum(r.error_after for r in refits)
    context.metrics.write("reconstruct", projections=len(refits), error_before=before, error_after=after,
                          error_ratio=after / before if before else 1.0, refits=[r.as_dict() for r in refits])


RECONSTRUCTION_IMPLEMENTATIONS: Registry[Callable[[RunContext, Any, Selection], None]] = Registry(
    "reconstruction method implementation")
RECONSTRUCTION_IMPLEMENTATIONS.register("least-squares")(least_squares)

def hand_on_sharded(context: RunContext, changed: bool) -> None:
    """When the models are sharded, what pruning scored (and refit) whole in every process is not handed on whole:
    weights it `changed` are sharded in place (each process keeps its part), the source's own are let go (the later
    stages read them from its files, sharded)."""
    if not context.sharding or context.model is None or any_sharded(context.model):
        return
    if changed:
        shard_for_reading(context.model, context.verified.source.adapter.layer_prefix)
    else:
        context.release_source()


PRUNE_IMPLEMENTATIONS: Registry[PruneMethod] = Registry("prune method implementation")
PRUNE_IMPLEMENTATIONS.register("hard-concrete")(learn_masks)
for _name in IMPORTANCE_METHODS:
    PRUNE_IMPLEMENTATIONS.register(_name)(scored_masks)


@STAGES.register("prune")
class PruneStage(Stage):
    stage_plan: PrunePlan

    def run(self, context: RunContext) -> None:
        params = self.stage_plan.params
        context.model.train()
        selection = PRUNE_IMPLEMENTATIONS.get(params.method)(context, self.stage_plan)
        context.masks = selection.masks
        kept = {kind: int(torch.count_nonzero(mask)) for kind, mask in context.masks.items()}
        context.metrics.write("prune", method=params.method, kept=kept)
        if params.reconstruct is not None:
            RECONSTRUCTION_IMPLEMENTATIONS.get(params.reconstruct.method)(context, params.reconstruct, selection)
        hand_on_sharded(context, params.changes_weights)
        context.save_complete("prune", selection.step, context.model if params.changes_weights else None,
                              {"masks": context.masks, "mixer": context.mixer_state})

    def restore(self, context: RunContext, checkpoint: Checkpoint) -> None:
        """The masks; and the source's weights as pruning left them, when it trained or refit them."""
        handed = checkpoint.trainer_state()
        context.masks, context.mixer_state = handed["masks"], handed["mixer"]
        if checkpoint.weights is not None or checkpoint.sharded is not None:
            checkpoint.load_model(context.model)
            context.source_modified = True
        hand_on_sharded(context, context.source_modified)
