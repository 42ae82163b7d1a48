"""The plan: a versioned, hashed, fully resolved IR between compiler and runtime.

The compiler builds it, the runtime parses it once (shearc.plan.read_plan) and hands each
stage its own typed section. Every default is written out. Its JSON Schema (serialization mode) requires every
field, so a runtime that validates against it never falls back on a default.
Bump PLAN_VERSION's minor for an added optional field, the major for a removal or
a type change.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shearc.sections import EvalSpec, ExportSpec, MixerSpec, PruneSpec, RecoverySpec, RuntimeSpec, ScheduleSpec

# 4: sections typed on both sides; the target shape and pruned units written once (under `target`);
# the training stages' eval size written out
# 5: eval.lm_eval_tasks replaced by eval.lm_eval, resolved into the evaluate stage's `downstream`
# 6: data.window_bos and data.window_bos_origin: how every window begins (plans before it windowed without BOS)
# 7: prune.params.reconstruct and the prune stage's `reconstruction` estimate (a 6.x plan's schema lacks them)
# 8: `precision`, what runtime.precision resolved to on a CPU and on CUDA; runtime.compile
# 9: runtime.divergence_rise, the divergence guard of training stages
# 9.1: the evaluate stage's `latency_of`; each stage estimate's `host_memory_bytes`
PLAN_VERSION = (9, 1)


class PlanPart(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_serialization_defaults_required=True)


class ShapeInfo(PlanPart):
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    head_dim: int


class ModelInfo(PlanPart):
    shape: ShapeInfo
    params: int = Field(description="All parameters, as sum(p.numel()) counts them.")
    non_embedding_params: int
    forward_flops_per_token: int = Field(description="At the longest stage's sequence length.")


class SourceInfo(PlanPart):
    model: str = Field(description="Hub id, or a directory relative to the plan file.")
    revision: str | None
    trust_remote_code: bool
    architecture: str
    config_origin: Literal["local", "hf-cache", "card"]
    config_path: str = Field(description="The config.json compiled against (relative to the plan when local).")
    fingerprint: str = Field(description="sha256 of fingerprint_fields in canonical JSON.")
    fingerprint_fields: dict[str, Any]
    model_info: ModelInfo


class UnitChangeInfo(PlanPart):
    kind: Literal["layer", "hidden", "kv_group", "query_head", "intermediate"]
    granularity: Literal["layer", "head", "intermediate", "hidden"]
    source: int = Field(description="Units per scope (per layer; per model for hidden and layer) before.")
    target: int


class TargetInfo(PlanPart):
    requested: Literal["shape", "params"]
    budget: int | None
    config: dict[str, Any] = Field(description="The target's config.json: a standard config of the architecture.")
    model_info: ModelInfo
    params_ratio: float = Field(description="Target parameters / source parameters.")
    pruned_units: list[UnitChangeInfo]


class GroupInfo(PlanPart):
    kind: str
    granularity: str
    scope: Literal["model", "layer"]
    count: int
    scopes: int
    params_per_unit: int
    tensors: list[str]


class FilesFound(PlanPart):
    files: int
    bytes: int


class DomainPlan(PlanPart):
    name: str
    weight: float = Field(description="Initial proportion, normalised.")
    reference_loss: float | None
    train: list[str] = Field(description="Files or globs, relative to the plan file.")
    eval: list[str]
    train_found: FilesFound = Field(description="What compile found (data may be absent at compile time).")
    eval_found: FilesFound


class DataPlan(PlanPart):
    tokenizer: str
    text_field: str
    eval_fraction: float
    window_bos: int | None = Field(description="The token every window of text begins with (the tokenizer's BOS); "
                                   "None: windows begin with the text's own tokens.")
    window_bos_origin: Literal["tokenizer", "spec", "family"] = Field(
        description="What decided window_bos: the source's tokenizer, the spec's data.window_bos, or (no tokenizer "
        "found at compile time) the family's usual tokenizer.")
    domains: list[DomainPlan]


class PrecisionPlan(PlanPart):
    cpu: Literal["bf16", "fp32"] = Field(description="What a run on a CPU computes in (bf16: autocast over fp32 "
                                         "master weights).")
    cuda: Literal["bf16", "fp32"] = Field(description="What a run on a CUDA device computes in.")
    reason: str = Field(description="Why: the spec's runtime.precision, or what `auto` found on the compiling "
                        "machine.")


class MemoryInfo(PlanPart):
    weights: int
    grads: int
    optimizer: int
    activations: int
    masks: int
    total: int


class StageEstimate(PlanPart):
    tokens: int
    steps: int
    flops: int
    memory_bytes: MemoryInfo = Field(description="Peak per device.")
    fits_device: bool
    host_memory_bytes: int | None = Field(
        None, description="Peak host memory of the busiest process beyond its baseline: on a CPU the device's "
        "(memory_bytes); on GPUs what passes through host memory (compiler/estimates.py host_memory). None in plans "
        "before 9.1.")


def _eval_sequences_field() -> int | None:
    return Field(description="Eval sequences per domain at each of the stage's eval_interval evaluations "
                 "(None when the stage does not train).")


class PrunePlan(PlanPart):
    stage: Literal["prune"]
    params: PruneSpec
    eval_sequences: int | None = _eval_sequences_field()
    estimate: StageEstimate = Field(description="The whole stage: selection, then reconstruction when it is on.")
    reconstruction: StageEstimate | None = Field(
        description="Reconstruction's own share of the estimate (its peak is the stage's when larger); None when off.")


class FinalizeCheck(PlanPart):
    windows: int = Field(description="Windows of eval text the sliced model is checked on, spread over the domains.")
    tokens: int = Field(description="Tokens per window.")


class FinalizePlan(PlanPart):
    stage: Literal["finalize"]
    check: FinalizeCheck = Field(description="The logits check of the sliced model against the masked one.")
    estimate: StageEstimate


class RecoverPlan(PlanPart):
    stage: Literal["recover"]
    params: RecoverySpec
    eval_sequences: int = _eval_sequences_field()
    estimate: StageEstimate


class DownstreamTaskPlan(PlanPart):
    task: str = Field(description="The task's name (lm-eval's, or the local YAML's `task`).")
    path: str | None = Field(description="The local task YAML, relative to the plan; None for a task lm-eval knows.")
    metric: str = Field(description="The metric reported, with its filter: name,filter.")
    num_fewshot: int
    data: list[str] = Field(description="Where its data was found (files relative to the plan, or cache folders).")


class EvaluatePlan(PlanPart):
    stage: Literal["evaluate"]
    params: EvalSpec
    downstream: list[DownstreamTaskPlan] = Field(description="lm-eval tasks run on the source and the result, "
                                                 "resolved from params.lm_eval (presets expanded, data found).")
    latency_of: list[Literal["source", "result"]] = Field(
        ["source", "result"], description="The models whose forward latency is measured, on one device as served: "
        "those whose weights, as the run holds them, and one latency forward fit runtime.device_memory_gib; the "
        "others' latency is reported as not measured.")
    estimate: StageEstimate


class ExportPlan(PlanPart):
    stage: Literal["export"]
    params: ExportSpec
    estimate: StageEstimate


StagePlan = Annotated[PrunePlan | FinalizePlan | RecoverPlan | EvaluatePlan | ExportPlan,
                      Field(discriminator="stage")]


class SpecInfo(PlanPart):
    name: str
    description: str
    sha256: str = Field(description="sha256 of the validated spec (defaults filled) in canonical JSON.")


class Plan(PlanPart):
    plan_version: tuple[int, int]
    shearc_version: str
    spec: SpecInfo
    source: SourceInfo
    target: TargetInfo
    groups: list[GroupInfo]
    data: DataPlan
    mixer: MixerSpec
    schedule: ScheduleSpec
    runtime: RuntimeSpec = Field(description="output_dir resolved, relative to the plan file.")
    precision: PrecisionPlan
    stages: list[StagePlan]
    warnings: list[str]
    plan_sha256: str = Field(description="sha256 of this plan without this field, in canonical JSON.")

    def stage(self, name: str) -> StagePlan | None:
        """The stage of that name, or None when the plan has none."""
        return next((stage for stage in self.stages if stage.stage == name), None)

    @property
    def prune(self) -> PrunePlan:
        """Every plan prunes."""
        return next(stage for stage in self.stages if isinstance(stage, PrunePlan))

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def plan_schema() -> dict[str, Any]:
    # Serialization mode: every field is required, so a plan must spell out every number.
    return {"$schema": SCHEMA_DIALECT, **Plan.model_json_schema(mode="serialization")}
