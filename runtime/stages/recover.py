"""The recover stage: train the dense model again, fully or through LoRA adapters merged at the end.

    recovery: {method: full}                               # continued pretraining of every weight
    recovery: {method: lora, rank: 8, alpha: 16}           # peft adapters, merged before export
    recovery: {method: distill, student: full}             # logit distillation from the source (Minitron)

Full recovery trains fp32 master weights; LoRA reads its frozen base in the compute dtype (bf16 on
a GPU) and trains fp32 adapters. The mixer continues from the proportions pruning ended with
(mixer_start: pruned, the default but for drpruning) or starts over from the initial ones
(initial), keeping pruning's reference losses either way. The emitted model has no adapters and the target's shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from shearc.compiler.source import hf_config
from shearc.plan import RecoverPlan
from shearc.registry import Registry
from shearc.sections import DistillRecoverySpec, LoraRecoverySpec

from .. import distributed
from ..loss import SequenceLoss, sequence_losses
from ..precision import compute_dtype
from ..train.distillation import Distillation
from ..train.loop import PlainTask, Task
from .base import STAGES, RunContext, Stage
from .training import Training


class LanguageModelling(PlainTask):
    """The plain LM objective: nothing around the loss."""

    def lm_loss(self, model: torch.nn.Module, input_ids: torch.Tensor, step: int, micro: int) -> SequenceLoss:
        return sequence_losses(model, input_ids)


def with_lora(model: torch.nn.Module, params: LoraRecoverySpec | DistillRecoverySpec) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=params.rank, lora_alpha=params.alpha, lora_dropout=params.dropout,
                        target_modules=list(params.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


@dataclass(frozen=True)
class Recovery:
    """How a recovery method trains the dense model: what wraps it, and what comes out. (Whether the dense
    weights train is the method's section's `frozen_base`.)"""

    wrap: Callable[[torch.nn.Module, Any], torch.nn.Module]  # (dense model, the plan's recovery section)
    inner: Callable[[torch.nn.Module], torch.nn.Module]  # the transformers model inside the wrapped one
    unwrap: Callable[[torch.nn.Module], torch.nn.Module]  # the dense model to hand on, adapters merged
    # The objective the loop trains (train/loop.py's Task), made before the source is released from memory.
    task: Callable[[RunContext, Any], Task] = lambda _context, _params: LanguageModelling()


# The runtime's recovery methods, under the compiler's names (but `none`, which plans no recover stage).
RECOVERY_IMPLEMENTATIONS: Registry[Recovery] = Registry("recovery method implementation")
RECOVERY_IMPLEMENTATIONS.register("full")(Recovery(lambda model, _: model, lambda model: model, lambda model: model))
RECOVERY_IMPLEMENTATIONS.register("lora")(Recovery(with_lora, lambda model: model.base_model.model,
                                                   lambda model: model.merge_and_unload()))


def _adapted(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def distillation_teacher(context: RunContext) -> torch.nn.Module:
    """The unmodified source, frozen. Under FSDP2 it is sharded block by block like the student: each process
    holds 1/n of its weights and gathers one block at a time for its forward."""
    if context.sharding:  # read sharded from the source's files: no process holds it whole
        teacher = context.sharded_source(compute_dtype(context.plan.precision, context.device), training=True)
        teacher = teacher.eval().requires_grad_(False)
    else:
        teacher = context.source_for_reading().eval().requires_grad_(False)
    if context.plan.runtime.strategy == "fsdp2":  # (distributed.wrap leaves one read sharded as it is)
        blocks = teacher.get_submodule(context.verified.source.adapter.layer_prefix)
        teacher = distributed.wrap(teacher, context.device, "fsdp2", blocks)
    context.metrics.write("teacher", **distributed.held(teacher))
    return teacher


# The student trains in full or through LoRA (params.student); the teacher is the unmodified source.
RECOVERY_IMPLEMENTATIONS.register("distill")(Recovery(
    wrap=lambda model, params: with_lora(model, params) if params.student == "lora" else model,
    inner=lambda model: model.base_model.model if _adapted(model) else model,
    unwrap=lambda model: model.merge_and_unload() if _adapted(model) else model,
    task=lambda context, params: Distillation(distillation_teacher(context), params)))


@STAGES.register("recover")
class RecoverStage(Stage):
    stage_plan: RecoverPlan

    def run(self, context: RunContext) -> None:
        plan, params = context.plan, self.stage_plan.params
        restart = params.mixer_start == "initial" or context.mixer_state is None
        training = Training.start(context, self.stage_plan, sampler_seed=context.seed + 1)
        recovery = RECOVERY_IMPLEMENTATIONS.get(params.method)
        task = recovery.task(context, params)
        context.release_source()
        if context.sharding and context.dense_model is None and not params.frozen_base:
            # every weight trains: read sharded from RUN_DIR/dense/ in fp32, no process holding it whole
            model = context.sharded_dense(training=True)
        else:
            if context.resume is not None and context.dense_model is None:  # resumed inside this stage: its
                context.dense_model = AutoModelForCausalLM.from_config(  # checkpoint's weights go into a fresh one
                    hf_config(context.dense_config()), dtype=context.source_held_as)  # buffers as built
            elif context.dense_model is None:  # sharded, adapters to add first: read whole from RUN_DIR/dense/
                context.dense_model = context.dense_from_shards()
            # What trains keeps fp32 master weights; a frozen base is only read, in the compute dtype
            # (peft keeps LoRA's adapters in fp32).
            frozen = compute_dtype(plan.precision, context.device)
            model = context.dense_model.to(context.device, dtype=frozen if params.frozen_base else torch.float32)
        model = recovery.wrap(model, params)
        context.metrics.write("held", model="recovered", **distributed.held(model))
        if context.resume is not None:  # the (adapted) weights back; the loop restores the rest
            context.resume.load_model(model)
        blocks = recovery.inner(model).get_submodule(context.verified.source.adapter.layer_prefix)
        training.run(context, "recover", model, blocks, lambda: [
            {"params": [p for p in model.parameters() if p.requires_grad], "lr": params.lr}],
            task, restart_mixer=restart)

        def fresh() -> torch.nn.Module:
            dense = AutoModelForCausalLM.from_config(hf_config(context.dense_config()), dtype=context.source_held_as)
            dense = dense.to(context.device, dtype=torch.float32)  # buffers as finalize built them, weights fp32
            return recovery.wrap(dense, params)

        if _adapted(model):  # merging the adapters into the weights they adapt needs those weights whole
            model = distributed.unsharded(model, fresh)
        dense = recovery.unwrap(model).eval()
        context.write_dense_model(dense)  # what the later stages read (sharded, the only copy they have)
        context.dense_model = None if context.sharding else dense
        context.mixer_state = training.mixer.state_dict()
        context.save_complete("recover", training.schedule.steps, None, {"mixer": context.mixer_state}, dense=True)
