"""The finalize stage: fold the masks into the weights and slice to a dense model of the target config.

The masked checkpoint is saved first, so a failed export keeps it: the masks
(RUN_DIR/masks.safetensors) and, when pruning trained the weights (hard-concrete),
the masked model itself (RUN_DIR/masked/, save_pretrained format).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from shearc.canonical import atomic_directory
from shearc.compiler.adapters import Shape
from shearc.compiler.source import hf_config

from ..distributed import is_main
from ..finalize import finalize_state
from ..masks.hooks import MaskHooks
from .base import STAGES, RunContext, Stage

LOGITS_TOLERANCE = 1e-4


class FinalizeCheckError(RuntimeError):
    """The sliced model does not compute what the masked model computes: a bug (exit 1)."""


def check_batch(plan: dict, vocab: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(plan["runtime"]["seed"])
    return torch.randint(0, vocab, (2, 32), generator=generator)


def masked_logits(context: RunContext, ids: torch.Tensor) -> torch.Tensor:
    model = context.model.float().eval()
    hooks = MaskHooks(model, context.verified.source.adapter)
    hooks.values = {kind: mask.float() for kind, mask in context.masks.items()}
    try:
        with torch.no_grad():
            return model(input_ids=ids.to(context.device)).logits.float().cpu()
    finally:
        hooks.remove()


def save_masks(masks: dict[str, torch.Tensor], path: os.PathLike[str]) -> None:
    tmp = f"{path}.tmp"
    save_file({kind: mask.detach().float().cpu().contiguous() for kind, mask in masks.items()}, tmp)
    os.replace(tmp, path)


def save_masked_model(model: torch.nn.Module, directory: Path) -> None:
    with atomic_directory(directory) as staging:
        model.save_pretrained(staging, safe_serialization=True)


@STAGES.register("finalize")
class FinalizeStage(Stage):
    def run(self, context: RunContext) -> None:
        from transformers import AutoModelForCausalLM

        source, plan = context.verified.source, context.plan
        if is_main():
            save_masks(context.masks, context.run_dir / "masks.safetensors")
            prune = next(s for s in plan["stages"] if s["stage"] == "prune")
            if prune["params"]["method"] == "hard-concrete":  # the weights trained with the masks
                save_masked_model(context.model, context.run_dir / "masked")
        state = {k: v.detach().float() for k, v in context.model.state_dict().items()}
        dense_state, reached = finalize_state(state, source.adapter, context.masks, source.shape, tied=source.tied)
        expected = Shape(**self.stage_plan["target_shape"])
        if reached != expected:  # the prune stage promised this shape: a bug if it did not deliver
            raise AssertionError(f"masks reach {reached}, the plan's target is {expected}")
        # Built for real (not on meta): non-persistent buffers such as rotary frequencies must exist.
        dense = AutoModelForCausalLM.from_config(hf_config(plan["target"]["config"]))
        dense.load_state_dict(dense_state, strict=True)
        ids = check_batch(plan, source.vocab)
        with torch.no_grad():
            difference = (dense.eval()(input_ids=ids).logits.float() - masked_logits(context, ids)).abs().max().item()
        context.metrics.write("finalize", max_logit_difference=difference)
        if difference >= LOGITS_TOLERANCE:
            raise FinalizeCheckError(f"the dense model's logits differ from the masked model's by {difference:.3e} "
                                     f"(tolerance {LOGITS_TOLERANCE}); the masked checkpoint is in {context.run_dir}")
        context.dense_model = dense.to(context.device)
        context.target_shape = reached
        context.checks["max_logit_difference"] = difference
