"""`recovery:` training after pruning.

    recovery: {method: full}                 # continued pretraining (Sheared-LLaMA, DRPruning)
    recovery: {method: lora, rank: 8}        # LLM-Pruner, merged before export
    recovery: {method: distill}              # Minitron: logit distillation from the source

Each method's section says what it costs (`cost`, asked by the compiler's estimate pass) and
whether the dense weights train (`frozen_base`: a frozen base is held in the compute dtype).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from .base import Section
from .registry import RECOVERIES
from .training import (
    TrainingStageSpec,
    eval_interval_field,
    global_batch_field,
    lr_field,
    seq_len_field,
    steps_field,
    warmup_field,
)

MixerStart = Literal["pruned", "initial"]

if TYPE_CHECKING:
    from shearc.compiler.estimates import Costing, StageCost


def _mixer_start_field() -> MixerStart | None:
    return Field(None, description="Where the mixer starts: `pruned`, from the proportions pruning ended with "
                 "(Sheared-LLaMA's dynamic batch loading), or `initial`, from data.domains' weights (DRPruning's "
                 "continued pretraining: its ball and clamps are centred on them again). Unset: `initial` for "
                 "the drpruning mixer, `pruned` for the others; the plan holds the value chosen.")


@RECOVERIES.register("none")
class NoRecoverySpec(Section):
    """Export the pruned model as it is."""

    method: Literal["none"]


@RECOVERIES.register("full")
class FullRecoverySpec(TrainingStageSpec):
    """Continued pretraining of every weight."""

    method: Literal["full"]
    frozen_base: ClassVar[bool] = False
    steps: int = steps_field(48000, "Sheared-LLaMA: 48,000, i.e. 50B tokens")
    global_batch: int = global_batch_field(256)
    seq_len: int = seq_len_field(4096)
    lr: float = lr_field(1e-4)
    warmup_steps: int = warmup_field(1440)
    eval_interval: int = eval_interval_field(400)
    mixer_start: MixerStart | None = _mixer_start_field()

    def cost(self, costing: Costing) -> StageCost:
        """Every dense weight trains: fp32 master weights, gradients and AdamW states."""
        return costing.dense_training(self)


def _rank_field() -> int:
    return Field(8, gt=0, description="LoRA rank r.")


def _alpha_field() -> float:
    return Field(16.0, gt=0, description="LoRA alpha (scale alpha / r).")


def _dropout_field() -> float:
    return Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")


def _target_modules_field() -> list[str] | None:
    return Field(
        None,
        min_length=1,
        description="Projections that get adapters, by module name. Unset: every projection the source's family "
        "adapts (Llama: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj); the plan holds the list.",
    )


@RECOVERIES.register("lora")
class LoraRecoverySpec(TrainingStageSpec):
    """LoRA adapters through peft, merged into dense weights before export."""

    method: Literal["lora"]
    frozen_base: ClassVar[bool] = True
    rank: int = _rank_field()
    alpha: float = _alpha_field()
    dropout: float = _dropout_field()
    target_modules: list[str] | None = _target_modules_field()
    steps: int = steps_field(1618, "LLM-Pruner: 2 epochs of 51,760 examples at batch 64")
    global_batch: int = global_batch_field(64)
    seq_len: int = seq_len_field(256)
    lr: float = lr_field(1e-4)
    warmup_steps: int = warmup_field(100)
    eval_interval: int = eval_interval_field(100)
    mixer_start: MixerStart | None = _mixer_start_field()

    def cost(self, costing: Costing) -> StageCost:
        """fp32 adapters train beside the frozen base; the frozen weights take no weight gradients."""
        return costing.dense_training(self)


@RECOVERIES.register("distill")
class DistillRecoverySpec(TrainingStageSpec):
    """Minitron: logit distillation from the source (the teacher: frozen, in the compute dtype) into the pruned
    model (the student), trained in full or through LoRA adapters merged before export."""

    method: Literal["distill"]
    student: Literal["full", "lora"] = Field("full", description="Train every student weight, or LoRA adapters "
                                             "(rank, alpha, dropout, target_modules) merged before export.")
    temperature: float = Field(1.0, gt=0, description="Both distributions are softened by this temperature; the "
                               "KL is scaled by its square (Hinton et al.), so gradients keep their size.")
    top_k: int | None = Field(None, gt=0, description="KL over the teacher's k most likely tokens only (both "
                              "distributions renormalised over them): less memory and time for big vocabularies. "
                              "Unset: the whole vocabulary.")
    lm_weight: float = Field(0.0, ge=0, description="Weight of the ordinary language-model loss added to the KL "
                             "(Minitron: 0). Measured and logged whatever its weight.")
    rank: int = _rank_field()
    alpha: float = _alpha_field()
    dropout: float = _dropout_field()
    target_modules: list[str] | None = _target_modules_field()
    steps: int = steps_field(1000, "Minitron distils for about 94B tokens; size it to the budget")
    global_batch: int = global_batch_field(256)
    seq_len: int = seq_len_field(4096)
    lr: float = lr_field(1e-4)
    warmup_steps: int = warmup_field(100)
    eval_interval: int = eval_interval_field(100)
    mixer_start: MixerStart | None = _mixer_start_field()

    @property
    def frozen_base(self) -> bool:
        return self.student == "lora"

    def cost(self, costing: Costing) -> StageCost:
        """The student trains (in full or through adapters) beside the teacher: its weights in the compute dtype,
        one forward per micro-batch, and its logits."""
        student = costing.dense_training(self)
        teacher = costing.forward_flops(costing.source_shape, self.seq_len) * self.tokens
        return costing.stage(self.tokens, self.steps, student.flops + teacher,
                             student.memory.plus(costing.teacher(self.seq_len)))
