"""The recover stage: train the dense model again, fully or through LoRA adapters merged at the end.

    recovery: {method: full}                               # continued pretraining of every weight
    recovery: {method: lora, rank: 8, alpha: 16}           # peft adapters, merged before export

Full recovery trains fp32 master weights; LoRA reads its frozen base in the compute dtype (bf16 on
a GPU) and trains fp32 adapters. The mixer continues from the proportions pruning ended with
(mixer_start: pruned, the default but for drpruning) or starts over from the initial ones
(initial), keeping pruning's reference losses either way. The emitted model has no adapters and the target's shape.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from shearc.compiler.source import hf_config
from shearc.registry import Registry

from .. import distributed
from ..data import MixtureSampler, load_domains
from ..mixers import build_mixer
from ..precision import compute_dtype
from ..train.loop import Schedule, adamw, prepare, train
from ..train.signal import sequence_losses
from .base import STAGES, RunContext, Stage, reference_from_source


class LanguageModelling:
    """The plain LM objective: nothing around the loss."""

    target_sparsity = None

    def lm_loss(self, model: torch.nn.Module, input_ids: torch.Tensor, step: int, micro: int) -> torch.Tensor:
        return sequence_losses(model, input_ids)

    def extra_loss(self, step: int) -> None:
        return None

    def before_optimizer_step(self) -> None:
        pass

    def after_optimizer_step(self) -> None:
        pass

    def evaluation(self) -> Any:
        return nullcontext()

    def sparsity(self) -> None:
        return None

    def log_terms(self, step: int) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def with_lora(model: torch.nn.Module, params: dict[str, Any]) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=params["rank"], lora_alpha=params["alpha"], lora_dropout=params["dropout"],
                        target_modules=list(params["target_modules"]), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


@dataclass(frozen=True)
class Recovery:
    """How a recovery method trains the dense model: what wraps it, and what comes out."""

    frozen_base: bool  # the dense weights are only read (held in the compute dtype), not trained
    wrap: Callable[[torch.nn.Module, dict[str, Any]], torch.nn.Module]
    inner: Callable[[torch.nn.Module], torch.nn.Module]  # the transformers model inside the wrapped one
    unwrap: Callable[[torch.nn.Module], torch.nn.Module]  # the dense model to hand on, adapters merged


# The runtime's recovery methods, under the compiler's names (but `none`, which plans no recover stage).
RECOVERY_IMPLEMENTATIONS: Registry[Recovery] = Registry("recovery method implementation")
RECOVERY_IMPLEMENTATIONS.register("full")(Recovery(False, lambda model, _: model, lambda model: model,
                                                   lambda model: model))
RECOVERY_IMPLEMENTATIONS.register("lora")(Recovery(True, with_lora, lambda model: model.base_model.model,
                                                   lambda model: model.merge_and_unload()))


@STAGES.register("recover")
class RecoverStage(Stage):
    def run(self, context: RunContext) -> None:
        plan, params = context.plan, self.stage_plan["params"]
        schedule = Schedule.from_plan(params, plan)
        domains = load_domains(plan["data"], base_dir=context.verified.plan_dir, tokenizer=context.tokenizer,
                               seq_len=params["seq_len"], seed=context.seed, cache_dir=context.run_dir / "cache")
        sampler = MixtureSampler(domains, seed=context.seed + 1, rank=distributed.rank(),
                                 world_size=distributed.world_size())
        mixer = build_mixer(plan)
        if context.mixer_state is not None:  # pruning's reference losses; its weights unless restarted
            mixer.load_state_dict(context.mixer_state)
        restart = params["mixer_start"] == "initial" or context.mixer_state is None
        if context.resume is None:  # a resumed stage has its mixer's references in the checkpoint
            reference_from_source(context, mixer, domains, schedule)
        context.release_source()
        recovery = RECOVERY_IMPLEMENTATIONS.get(params["method"])
        # What trains keeps fp32 master weights; a frozen base is only read, in the compute dtype
        # (peft keeps LoRA's adapters in fp32).
        frozen = compute_dtype(plan["runtime"]["precision"], context.device)
        model = context.dense_model.to(context.device, dtype=frozen if recovery.frozen_base else torch.float32)
        model = recovery.wrap(model, params)
        if context.resume is not None:  # the (adapted) weights back; the loop restores the rest
            context.resume.load_model(model)
        prepare(model, plan)
        blocks = recovery.inner(model).get_submodule(context.verified.source.adapter.layer_prefix)
        replicated = distributed.wrap(model, context.device, plan["runtime"]["strategy"], blocks)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = adamw(trainable, plan, context.device, lr=params["lr"])
        train(stage="recover", model=model, optimizer=optimizer, schedule=schedule, sampler=sampler, mixer=mixer,
              eval_domains=domains, task=LanguageModelling(), metrics=context.metrics, device=context.device,
              restart_mixer=restart, saving=context.saving(), resume=context.resume, replicated=replicated)

        def fresh() -> torch.nn.Module:
            dense = AutoModelForCausalLM.from_config(hf_config(plan["target"]["config"])).to(context.device)
            return recovery.wrap(dense, params)

        model = distributed.unsharded(model, fresh)
        context.dense_model = recovery.unwrap(model).eval()
        context.mixer_state = mixer.state_dict()
        context.save_complete("recover", schedule.steps, context.dense_model, {"mixer": context.mixer_state})
