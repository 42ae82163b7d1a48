"""The prune stage: turn the plan's method into masks of the exact target shape.

    prune: {method: hard-concrete}  # masks learned with the model and a Lagrangian (see hard_concrete.py)
    prune: {method: taylor}       # calibration windows from the mixture, scored once or in rounds
    prune: {method: magnitude}    # weights only
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from shearc.compiler.adapters import Shape
from shearc.compiler.graph import build_graph
from shearc.registry import Registry

from ..data import MixtureSampler, load_domains
from ..importance.prune import score_and_select
from .base import STAGES, RunContext, Stage
from .hard_concrete import learn_masks

# The runtime's prune methods, under the compiler's names.
PRUNE_IMPLEMENTATIONS: Registry[str] = Registry("prune method implementation")
for _name in ("hard-concrete", "taylor", "magnitude"):
    PRUNE_IMPLEMENTATIONS.register(_name)(_name)


def calibration_windows(context: RunContext, count: int, seq_len: int) -> list[torch.Tensor]:
    """`count` windows of `seq_len` tokens drawn from the plan's initial mixture, reproducibly."""
    plan = context.plan
    domains = load_domains(plan["data"], base_dir=context.verified.plan_dir, tokenizer=context.tokenizer,
                           seq_len=seq_len, seed=context.seed, cache_dir=context.run_dir / "cache")
    weights = np.array([d["weight"] for d in plan["data"]["domains"]])
    batch = MixtureSampler(domains, seed=context.seed).next_batch(weights, count)
    return [torch.as_tensor(row, device=context.device) for row in batch.input_ids]


@STAGES.register("prune")
class PruneStage(Stage):
    def setup(self, context: RunContext) -> None:
        params = self.stage_plan["params"]
        self.windows: Iterable[torch.Tensor] = []
        if params["method"] == "taylor":
            self.windows = calibration_windows(context, params["calibration_samples"], params["calibration_seq_len"])

    def run(self, context: RunContext) -> None:
        params: dict[str, Any] = self.stage_plan["params"]
        source = context.verified.source
        target = Shape(**context.plan["target"]["model_info"]["shape"])
        context.model.train()
        if params["method"] == "hard-concrete":
            context.masks = learn_masks(context, self.stage_plan)
        else:  # the weights are the source's: the checkpoint holds the masks only
            context.masks = score_and_select(context.model, source.adapter, build_graph(source), source.shape,
                                             target, params, lambda: self.windows,
                                             batch_size=context.plan["schedule"]["micro_batch"])
            context.save_complete("prune", 0, None, {"masks": context.masks, "mixer": None})
        kept = {kind: int(torch.count_nonzero(mask)) for kind, mask in context.masks.items()}
        context.metrics.write("prune", method=params["method"], kept=kept)
