"""The finalize stage: fold the masks into the weights and slice to a dense model of the target config.

The masks are saved first (RUN_DIR/masks.safetensors) and, when pruning changed the weights
(hard-concrete trained them; reconstruction refit them), the masked model itself (RUN_DIR/masked/,
save_pretrained format), so a failed check keeps them; the prune stage's checkpoint lets a re-run
start here without pruning again.
The dense model is checked against the masked one on real eval text (logits_check.py), after which
the source is no longer needed in memory. This stage's checkpoint holds the dense weights only when
pruning changed them: otherwise the source and the masks determine them, and a resumed run slices
them again (half a second on Gemma 3 270M, where writing them took 1.4 s of a 17 s stage).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from shearc.canonical import atomic_directory, pretty_json, write_text_atomic
from shearc.errors import CheckFailed
from shearc.plan import FinalizePlan

from ..distributed import is_main
from ..logits_check import Agreement, compare_logits
from ..models import build_dense
from ..slicing import finalize_state
from .base import STAGES, RunContext, Stage


class FinalizeCheckError(CheckFailed):
    """The sliced model does not compute what the masked model computes (exit 1, with what to do next)."""


def check_windows(context: RunContext, count: int, tokens: int) -> list[torch.Tensor]:
    """Up to `count` windows of `tokens` tokens of eval text, spread over the domains."""
    domains = context.load_domains(tokens, head=count * tokens)
    per_domain = math.ceil(count / len(domains))
    windows = [window for domain in domains for window in domain.eval_windows(tokens, per_domain)]
    return [torch.as_tensor(w.astype("int64"), device=context.device) for w in windows[:count]]


def save_masks(masks: dict[str, torch.Tensor], path: os.PathLike[str]) -> None:
    tmp = f"{path}.tmp"
    save_file({kind: mask.detach().float().cpu().contiguous() for kind, mask in masks.items()}, tmp)
    os.replace(tmp, path)


def save_masked_model(model: torch.nn.Module, directory: Path) -> None:
    with atomic_directory(directory) as staging:
        model.save_pretrained(staging, safe_serialization=True)


def failure_message(agreement: Agreement, context: RunContext, trained: bool) -> str:
    source = context.verified.source
    masked = (context.run_dir / "masked" if trained
              else f"the source at {context.verified.model_dir} under those masks")
    return (
        f"the sliced model's logits differ from the masked model's by {agreement.max_difference:.3e}, more than the "
        f"tolerance {agreement.tolerance:.3e} (the rounding spread of this {source.shape.layers}-layer model in "
        f"{agreement.dtype} is {agreement.rounding_spread:.3e}); top-1 agreement {agreement.top1_agreement:.2%} and "
        f"KL {agreement.kl:.3e} nats per token over {agreement.tokens} tokens of eval text.\n"
        f"This is most likely a bug in how shearc slices {source.adapter.architecture}: please report it with "
        f"{context.run_dir / 'finalize_check.json'}. Kept: the masks ({context.run_dir / 'masks.safetensors'}), "
        f"the masked model ({masked}) and the prune stage's checkpoint.\n"
        f"Running the plan again starts here without pruning again; to accept a difference this size, run it with "
        f"--finalize-tolerance {agreement.max_difference * 1.01:.2e}."
    )


@STAGES.register("finalize")
class FinalizeStage(Stage):
    stage_plan: FinalizePlan

    def run(self, context: RunContext) -> None:
        source, plan = context.verified.source, context.plan
        trained = plan.prune.params.changes_weights
        if is_main():
            save_masks(context.masks, context.run_dir / "masks.safetensors")
            if trained:  # the weights trained with the masks, or refit
                save_masked_model(context.model, context.run_dir / "masked")
        dense_state, reached = finalize_state(context.model.state_dict(), source.adapter, context.masks,
                                              source.shape, tied=source.tied)
        expected = context.target_shape
        if reached != expected:  # the prune stage promised this shape: a bug if it did not deliver
            raise AssertionError(f"masks reach {reached}, the plan's target is {expected}")
        dense = build_dense(context.dense_config(), dense_state, source.adapter, context.source_held_as)
        del dense_state
        check = self.stage_plan.check
        agreement = compare_logits(context.model, context.masks, dense, source.adapter,
                                   check_windows(context, check.windows, check.tokens), seed=context.seed,
                                   tolerance=context.finalize_tolerance)
        context.metrics.write("finalize", **agreement.as_dict())
        if is_main():
            write_text_atomic(context.run_dir / "finalize_check.json", pretty_json(agreement.as_dict()))
        if not agreement.passed:
            raise FinalizeCheckError(failure_message(agreement, context, trained))
        context.dense_model = dense
        context.checks["logits"] = agreement.as_dict()
        context.save_complete("finalize", 0, dense if trained else None, {"mixer": context.mixer_state})
