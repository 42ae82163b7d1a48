"""`recovery:` training after pruning.

    recovery: {method: full}                 # continued pretraining (Sheared-LLaMA, DRPruning)
    recovery: {method: lora, rank: 8}        # LLM-Pruner, merged before export
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..registry import RECOVERIES
from .base import Section
from .training import (
    TrainingStage,
    eval_interval_field,
    global_batch_field,
    lr_field,
    seq_len_field,
    steps_field,
    warmup_field,
)

LoraModule = Literal["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


MixerStart = Literal["pruned", "initial"]


def _mixer_start_field() -> MixerStart | None:
    return Field(None, description="Where the mixer starts: `pruned`, from the proportions pruning ended with "
                 "(Sheared-LLaMA's dynamic batch loading), or `initial`, from data.domains' weights (DRPruning's "
                 "continued pretraining: its ball and clamps are centred on them again). Unset: `initial` for "
                 "the drpruning mixer, `pruned` for the others; the plan holds the value chosen.")


@RECOVERIES.register("none")
class NoRecovery(Section):
    """Export the pruned model as it is."""

    method: Literal["none"]


@RECOVERIES.register("full")
class FullRecovery(TrainingStage):
    """Continued pretraining of every weight."""

    method: Literal["full"]
    steps: int = steps_field(48000, "Sheared-LLaMA: 48,000, i.e. 50B tokens")
    global_batch: int = global_batch_field(256)
    seq_len: int = seq_len_field(4096)
    lr: float = lr_field(1e-4)
    warmup_steps: int = warmup_field(1440)
    eval_interval: int = eval_interval_field(400)
    mixer_start: MixerStart | None = _mixer_start_field()


@RECOVERIES.register("lora")
class LoraRecovery(TrainingStage):
    """LoRA adapters through peft, merged into dense weights before export."""

    method: Literal["lora"]
    rank: int = Field(8, gt=0, description="LoRA rank r.")
    alpha: float = Field(16.0, gt=0, description="LoRA alpha (scale alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[LoraModule] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="Projections that get adapters.",
    )
    steps: int = steps_field(1618, "LLM-Pruner: 2 epochs of 51,760 examples at batch 64")
    global_batch: int = global_batch_field(64)
    seq_len: int = seq_len_field(256)
    lr: float = lr_field(1e-4)
    warmup_steps: int = warmup_field(100)
    eval_interval: int = eval_interval_field(100)
    mixer_start: MixerStart | None = _mixer_start_field()
