"""The spec: one pydantic model per YAML section.

    name: sheared-llama-1.3b
    source: {model: meta-llama/Llama-2-7b-hf, config_card: models/llama-2-7b.json}
    target: {layers: 24, hidden: 2048, heads: 16, intermediate: 5504}
    prune: {method: hard-concrete}
    data: {domains: [...]}
    mixer: {method: dynamic-batch-loading}
    recovery: {method: full}

The method and settings sections (prune, mixer, recovery, schedule, runtime, export, eval) are
shared with the plan and live in shearc/sections; the sections here (source, target, data) and
the cross-section rules are the spec's own: the runtime never sees them.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from shearc.sections import (
    ConstantMixerSpec,
    EvalSpec,
    ExportSpec,
    MixerSpec,
    NoRecoverySpec,
    PruneSpec,
    RecoverySpec,
    RuleError,
    RuntimeSpec,
    ScheduleSpec,
    Section,
    TrainingStageSpec,
)

from .data import DataSpec, DomainSpec
from .source import SourceSpec
from .target import TargetSpec


class Spec(Section):
    """A compression recipe."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Recipe name; names the run directory.")
    description: str = Field("", description="Free text for people.")
    source: SourceSpec = Field(description="The pretrained model to prune.")
    target: TargetSpec = Field(description="Target shape or parameter budget.")
    prune: PruneSpec
    data: DataSpec = Field(description="Training domains and their initial mixture.")
    mixer: MixerSpec = ConstantMixerSpec(method="constant")
    recovery: RecoverySpec = NoRecoverySpec(method="none")
    schedule: ScheduleSpec = Field(ScheduleSpec(), description="Optimizer and learning-rate schedule.")
    runtime: RuntimeSpec = Field(RuntimeSpec(), description="Devices, precision, seed, checkpointing.")
    export: ExportSpec = Field(ExportSpec(), description="How the dense model is saved.")
    eval: EvalSpec = Field(EvalSpec(), description="Per-domain evaluation of source and result.")

    def training_stages(self) -> dict[str, TrainingStageSpec]:
        """The stages that run the training loop, by section name."""
        stages = {}
        if isinstance(self.prune, TrainingStageSpec):
            stages["prune"] = self.prune
        if isinstance(self.recovery, TrainingStageSpec):
            stages["recovery"] = self.recovery
        return stages

    @model_validator(mode="after")
    def _cross_section_rules(self) -> Spec:
        """Every rule that spans sections, all reported at once."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if getattr(self.mixer, "reference", None) == "given":
            for index, domain in enumerate(self.data.domains):
                if domain.reference_loss is None:
                    problems.append((("data", "domains", index, "reference_loss"),
                                     f"mixer {self.mixer.method} uses given reference losses, but domain "
                                     f"{domain.name!r} has none (or set mixer.reference: source)"))
        per_step = self.schedule.micro_batch * self.runtime.devices
        for section, stage in self.training_stages().items():
            if stage.global_batch % per_step:
                problems.append(((section, "global_batch"),
                                 f"{stage.global_batch} is not a multiple of schedule.micro_batch x runtime.devices "
                                 f"= {self.schedule.micro_batch} x {self.runtime.devices}"))
            if stage.warmup_steps >= stage.steps:
                problems.append(((section, "warmup_steps"),
                                 f"warm-up of {stage.warmup_steps} steps does not fit in {stage.steps} steps"))
            if stage.eval_interval > stage.steps:
                problems.append(((section, "eval_interval"),
                                 f"{stage.eval_interval} is longer than the stage ({stage.steps} steps)"))
        if problems:
            raise RuleError(problems)
        if getattr(self.recovery, "mixer_start", "") is None:  # the mixer's own practice; written into the plan
            start = "initial" if self.mixer.method == "drpruning" else "pruned"
            object.__setattr__(self, "recovery", self.recovery.model_copy(update={"mixer_start": start}))
        return self


__all__ = ["DataSpec", "DomainSpec", "SourceSpec", "Spec", "TargetSpec"]
