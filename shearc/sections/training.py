"""The length and learning rate of one training stage.

Pruning and recovery methods that train inherit these fields and set the
reference paper's defaults on them.
"""

from __future__ import annotations

from pydantic import Field

from .base import Section


def steps_field(default: int, why: str) -> int:
    return Field(default, gt=0, description=f"Optimizer steps in this stage ({why}).")


def global_batch_field(default: int) -> int:
    return Field(default, gt=0, description="Sequences per optimizer step, over all devices.")


def seq_len_field(default: int) -> int:
    return Field(default, gt=0, description="Tokens per packed training sequence.")


def lr_field(default: float) -> float:
    return Field(default, gt=0, description="Peak learning rate of the model weights.")


def warmup_field(default: int) -> int:
    return Field(default, ge=0, description="Linear learning-rate warm-up, in steps.")


def eval_interval_field(default: int) -> int:
    return Field(default, gt=0, description="Steps between per-domain evaluations (the mixer updates then).")


class TrainingStageSpec(Section):
    steps: int
    global_batch: int
    seq_len: int
    lr: float
    warmup_steps: int
    eval_interval: int

    @property
    def tokens(self) -> int:
        return self.steps * self.global_batch * self.seq_len
