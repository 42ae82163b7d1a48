"""The finalize stage: fold the masks into the weights and slice to a dense model of the target config.

The masks are saved first (RUN_DIR/masks.safetensors) and, when pruning changed the weights
(hard-concrete trained them; reconstruction refit them), the masked model itself (RUN_DIR/masked/,
save_pretrained format), so a failed check keeps them; the prune stage's checkpoint lets a re-run
start here without pruning again.
The dense model is written tensor by tensor into RUN_DIR/dense/ (dense_shards.py) and checked against
the masked one on real eval text (logits_check.py) as it streams from there, one module's weights in
memory at a time; only then is the source let go and the dense model loaded whole, so the two are never
whole in memory together (peak: the source and one shard, or the dense model, whichever is larger, plus
the check's activations). This stage's checkpoint holds the dense weights (RUN_DIR/dense/'s files, hard-linked)
only when pruning changed them: otherwise the source and the masks determine them, and a resumed run slices them
again.

Sharded over processes (FSDP2 on several), the masked model is not held whole either: what pruning changed is
written to RUN_DIR/masked/ (a tensor gathered at a time), the shards are let go, and the dense model is written
from those files (or the source's own, when pruning left its weights as they were) and checked with the masked
model streamed from them like the dense one; the dense model is not loaded (the later stages read RUN_DIR/dense/).
"""

from __future__ import annotations

import math
import os
from collections import deque
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file

from shearc.canonical import atomic_directory, pretty_json, write_text_atomic
from shearc.errors import CheckFailed
from shearc.plan import FinalizePlan

from ..dense_shards import write_shards_into
from ..distributed import GatheredState, any_sharded, barrier, is_main
from ..logits_check import Agreement, Permuted, compare_logits
from ..models import streamed_dense
from ..slicing import Kept, kept_units, permute_tensor_
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


def save_masked_model(model: torch.nn.Module, directory: Path, tied_head: str | None) -> None:
    """The masked model in save_pretrained's format (`tied_head`, the output head's name when it is the embedding:
    written once); every process calls it: a sharded model is gathered one tensor at a time, rank 0 writing."""
    sharded = any_sharded(model)
    tensors = ((key, tensor) for key, tensor in GatheredState(model).items() if key != tied_head)
    if is_main():
        with atomic_directory(directory) as staging:
            if sharded:
                write_shards_into(tensors, staging)
                model.config.save_pretrained(staging)
            else:
                model.save_pretrained(staging, safe_serialization=True)
    elif sharded:
        deque(tensors, maxlen=0)
    barrier()


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
        f"the masked model ({masked}), the sliced one ({context.dense_dir}) and the prune stage's checkpoint.\n"
        f"Running the plan again starts here without pruning again; to accept a difference this size, run it with "
        f"--finalize-tolerance {agreement.max_difference * 1.01:.2e}."
    )


def streamed_models(context: RunContext) -> tuple[torch.nn.Module, Permuted]:
    """The dense model as RUN_DIR/dense/ holds it, streamed (each module's weights read as it runs), and the same
    with its channels permuted (read permuted), for the check's rounding spread."""
    weights, adapter = context.dense_weights(), context.verified.source.adapter
    config, device, held_as = context.dense_config(), context.device, context.source_held_as

    def permuted(permutation: Kept) -> torch.nn.Module:
        reorder = partial(permute_tensor_, adapter=adapter, permutation=permutation, shape=permutation.shape)
        return streamed_dense(config, weights.with_transform(reorder), device, held_as)

    return streamed_dense(config, weights, device, held_as), permuted


@STAGES.register("finalize")
class FinalizeStage(Stage):
    stage_plan: FinalizePlan

    def run(self, context: RunContext) -> None:
        source = context.verified.source
        trained = context.plan.prune.params.changes_weights
        reached, expected = kept_units(context.masks, source.shape).shape, context.target_shape
        if reached != expected:  # the prune stage promised this shape: a bug if it did not deliver
            raise AssertionError(f"masks reach {reached}, the plan's target is {expected}")
        if is_main():
            save_masks(context.masks, context.run_dir / "masks.safetensors")
        if trained:  # the weights trained with the masks, or refit
            save_masked_model(context.model, context.run_dir / "masked", context.tied_head)
        if context.sharding:  # read from files: the masked/ just written, or the source's own
            weights = (context.weights_in(context.run_dir / "masked", lambda _name, tensor: tensor.float()) if trained
                       else context.source_weights(context.source_held_as, torch.float32))
            context.release_source()  # the shards pruning left: all of them are in those files now
            context.write_dense(weights, context.masks)
            masked = streamed_dense(source.config, weights, context.device, context.source_held_as)
        else:
            masked = context.model
            context.write_dense(masked, context.masks)
        dense, permuted = streamed_models(context)
        check = self.stage_plan.check
        agreement = compare_logits(masked, context.masks, dense, source.adapter,
                                   check_windows(context, check.windows, check.tokens), seed=context.seed,
                                   tolerance=context.finalize_tolerance, permuted=permuted)
        del masked
        context.metrics.write("finalize", **agreement.as_dict())
        if is_main():
            write_text_atomic(context.run_dir / "finalize_check.json", pretty_json(agreement.as_dict()))
        if not agreement.passed:
            raise FinalizeCheckError(failure_message(agreement, context, trained))
        context.release_source()  # before the dense model is loaded: the two are never whole in memory together
        # sharded, the later stages read RUN_DIR/dense/ each its own way (recover, evaluate, export)
        context.dense_model = None if context.sharding else context.dense_from_shards()
        context.checks["logits"] = agreement.as_dict()
        context.save_complete("finalize", 0, None, {"mixer": context.mixer_state}, dense=trained)
