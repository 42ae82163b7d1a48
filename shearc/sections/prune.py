"""`prune:` how units are scored or learned. Defaults are the reference papers'.

    prune: {method: hard-concrete}                 # Sheared-LLaMA
    prune: {method: taylor, estimator: element-first}   # LLM-Pruner
    prune: {method: magnitude, norm: l2}
    prune: {method: activation}                    # Minitron: forward passes only

Each method's section says which unit kinds it can remove (`units`), whether it trains the
source's weights (`trains_source`) or takes their gradients (`differentiates_source`), either of which
makes the run hold them in fp32, and what it costs (`cost`, asked by the compiler's estimate pass
through a `compiler.estimates.Costing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, field_validator

from . import reconstruct  # registers the reconstruction methods before the union below is made
from .base import Section
from .registry import PRUNE_METHODS, RECONSTRUCTIONS
from .training import (
    TrainingStageSpec,
    eval_interval_field,
    global_batch_field,
    lr_field,
    seq_len_field,
    steps_field,
    warmup_field,
)

Granularity = Literal["layer", "head", "intermediate", "hidden"]
ALL_GRANULARITIES: tuple[Granularity, ...] = ("layer", "head", "intermediate", "hidden")
Aggregation = Literal["sum", "mean", "prod", "max", "last"]
SECOND_ORDER_ESTIMATORS = frozenset({"element-hessian", "element-mix"})  # need the Fisher diagonal


def _granularities_field(default: tuple[str, ...]) -> list[Granularity]:
    return Field(
        list(default),
        min_length=1,
        description="Which kinds of unit this method may remove: layer, head (a KV group under GQA, or "
        "query heads inside a group), intermediate, hidden. A target that shrinks a kind not listed is rejected.",
    )


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("each granularity may be listed once")
    return values


if TYPE_CHECKING:
    from shearc.compiler.estimates import Costing, StageCost


def _aggregation_field(default: str) -> Aggregation:
    return Field(default, description="How a coupled group's member tensors combine, channel by channel, before "
                 "a unit's channels are summed: sum, mean, prod, max, or the last-executed member only (LLM-Pruner's "
                 "group reduction).")


def _reconstruct_field(default_on: bool):  # a pydantic FieldInfo
    description = ("Refit the layers that read pruned channels on calibration windows after selection (SlimGPT, "
                   "ZipLM); null: the kept weights stay as selection left them. Default: ")
    if not default_on:
        return Field(None, description=description + "null (the masks were trained with the weights).")
    return Field(default_factory=lambda: reconstruct.LeastSquaresReconstruction(method="least-squares"),
                 description=description + "least-squares (docs/BENCHMARKS.md: one-shot and after recovery, every "
                 "measured cell gains).")


class Reconstructs(Section):
    """What every prune method accepts: the layer-wise reconstruction after its selection."""

    trains_source: ClassVar[bool]
    differentiates_source: ClassVar[bool] = False  # its scores take gradients of the source's loss
    reconstruct: RECONSTRUCTIONS.discriminated_union() | None = _reconstruct_field(False)  # type: ignore[valid-type]

    @property
    def holds_source_in_fp32(self) -> bool:
        """Training the source or taking its gradients: held in bf16 it loses what they measure (Taylor scores of a
        bf16-held SmolLM2 chose a model that began recovery at 11.5 nats, against 6.4 from fp32; BENCHMARKS.md).
        Other methods read the source in the compute dtype."""
        return self.trains_source or self.differentiates_source

    @property
    def changes_weights(self) -> bool:
        """Whether the stage leaves weights other than the source's: trained with the masks, or refit."""
        return self.trains_source or self.reconstruct is not None


class RefitsByDefault(Reconstructs):
    """Selection by scores leaves every kept weight as it was: reconstruction is on unless the spec says null."""

    reconstruct: RECONSTRUCTIONS.discriminated_union() | None = _reconstruct_field(True)  # type: ignore[valid-type]


@PRUNE_METHODS.register("hard-concrete")
class HardConcretePruneSpec(TrainingStageSpec, Reconstructs):
    """Sheared-LLaMA: learned hard-concrete L0 masks with a Lagrangian size constraint."""

    method: Literal["hard-concrete"]
    # Unit kinds the method can remove; its head mask is [layers, kv_heads], so under GQA
    # it removes whole KV groups and cannot thin the query heads inside a group.
    units: ClassVar[frozenset[str]] = frozenset({"layer", "hidden", "kv_group", "intermediate"})
    trains_source: ClassVar[bool] = True
    granularities: list[Granularity] = _granularities_field(ALL_GRANULARITIES)
    steps: int = steps_field(3200, "Sheared-LLaMA: 3,200")
    global_batch: int = global_batch_field(32)
    seq_len: int = seq_len_field(4096)
    lr: float = lr_field(1e-4)
    warmup_steps: int = warmup_field(320)
    eval_interval: int = eval_interval_field(50)
    mask_lr: float = Field(1.0, gt=0, description="Learning rate of the mask log-alphas.")
    lagrangian_lr: float = Field(
        1.0, gt=0, description="Step size of the gradient *ascent* on the Lagrange multipliers "
        "(the reference writes it as -1.0 in the same optimizer)."
    )
    target_warmup_fraction: float = Field(
        0.2, ge=0, le=1, description="Fraction of pruning steps over which the target size ramps linearly "
        "from the source's to the target's (reference: 640 of 3,200)."
    )
    temperature: float = Field(2 / 3, gt=0, description="Hard-concrete temperature beta.")
    stretch_low: float = Field(-0.1, lt=0, description="Lower stretch limit l.")
    stretch_high: float = Field(1.1, gt=1, description="Upper stretch limit r.")
    epsilon: float = Field(1e-6, gt=0, lt=0.5, description="Uniform noise is drawn from (epsilon, 1 - epsilon).")
    init_log_alpha_mean: float = Field(5.0, description="Mean of the initial log-alphas (all units kept).")
    init_log_alpha_std: float = Field(0.01, ge=0, description="Std of the initial log-alphas.")
    soft_mask_scale: float = Field(
        0.8, gt=0, description="Kept units carry sigmoid(log_alpha / temperature * scale), folded into weights."
    )

    _check_granularities = field_validator("granularities")(_unique)

    def cost(self, costing: Costing) -> StageCost:
        """The source trains with its masks: fp32 weights, gradients, AdamW states and the masked activations."""
        memory = costing.training(costing.source_shape, self.seq_len, trained=costing.source_params, frozen=0,
                                  masked=True, masks=costing.mask_units())
        flops = 3 * costing.forward_flops(costing.source_shape, self.seq_len) * self.tokens
        return costing.stage(self.tokens, self.steps, flops, memory)


@PRUNE_METHODS.register("taylor")
class TaylorPruneSpec(RefitsByDefault):
    """LLM-Pruner: first/second-order Taylor importance of coupled groups on calibration samples."""

    method: Literal["taylor"]
    units: ClassVar[frozenset[str]] = frozenset({"layer", "hidden", "kv_group", "query_head", "intermediate"})
    trains_source: ClassVar[bool] = False
    differentiates_source: ClassVar[bool] = True
    granularities: list[Granularity] = _granularities_field(("head", "intermediate"))
    estimator: Literal["vector", "element-first", "element-hessian", "element-mix"] = Field(
        "element-first",
        description="LLM-Pruner's estimators, with H the Fisher-diagonal Hessian: vector (vectorize): |sum of "
        "W*grad| per channel; element-first (param_first, the reference's default): sum of |W*grad|; "
        "element-hessian (param_second): sum of |W*H*W|; element-mix (param_mix): sum of |W*grad - W*H*W/2|.",
    )
    aggregation: Aggregation = _aggregation_field("sum")
    calibration_samples: int = Field(10, gt=0, description="Random windows of the training data to score on.")
    calibration_seq_len: int = Field(64, gt=0, description="Tokens per calibration window.")
    iterations: int = Field(1, gt=0, description="Prune in this many equal rounds, re-scoring in between.")

    _check_granularities = field_validator("granularities")(_unique)

    @property
    def second_order(self) -> bool:
        return self.estimator in SECOND_ORDER_ESTIMATORS

    def cost(self, costing: Costing) -> StageCost:
        """A forward and backward per calibration window and round; gradients (and Fisher) beside the source."""
        tokens = self.calibration_samples * self.calibration_seq_len * self.iterations
        memory = costing.taylor(self.calibration_seq_len, second_order=self.second_order)
        flops = 3 * costing.forward_flops(costing.source_shape, self.calibration_seq_len) * tokens
        return costing.stage(tokens, self.iterations, flops, memory)


@PRUNE_METHODS.register("magnitude")
class MagnitudePruneSpec(RefitsByDefault):
    """Weight-norm importance of coupled groups: no gradients, no data."""

    method: Literal["magnitude"]
    units: ClassVar[frozenset[str]] = frozenset({"layer", "hidden", "kv_group", "query_head", "intermediate"})
    trains_source: ClassVar[bool] = False
    granularities: list[Granularity] = _granularities_field(("head", "intermediate"))
    norm: Literal["l1", "l2"] = Field("l2", description="Per channel, the sum of |w| (l1) or of w^2 (l2).")
    aggregation: Aggregation = _aggregation_field("mean")

    _check_granularities = field_validator("granularities")(_unique)

    def cost(self, costing: Costing) -> StageCost:
        """No data: the source and a score per weight."""
        return costing.stage(0, 0, 0, costing.magnitude())


@PRUNE_METHODS.register("activation")
class ActivationPruneSpec(RefitsByDefault):
    """Minitron (Muralidharan et al., 2024; NVIDIA Model Optimizer): importance from activations on calibration
    windows, forward passes only. Every width unit scores the L2 norm over the windows of its mean |activation|
    over the sequence: query heads and KV groups on the output projection's input (L2 over their channels),
    intermediate channels on the down projection's input (the gated activation), hidden channels on the outputs
    of every block's norms (summed over norms); layers by block influence, 1 - cosine(input, output) averaged
    over tokens."""

    method: Literal["activation"]
    units: ClassVar[frozenset[str]] = frozenset({"layer", "hidden", "kv_group", "query_head", "intermediate"})
    trains_source: ClassVar[bool] = False
    granularities: list[Granularity] = _granularities_field(("head", "intermediate", "hidden"))
    calibration_samples: int = Field(1024, gt=0, description="Random windows of the training data to score on "
                                     "(the reference's cap on calibration batches: 1024).")
    calibration_seq_len: int = Field(4096, gt=0, description="Tokens per calibration window.")

    _check_granularities = field_validator("granularities")(_unique)

    def cost(self, costing: Costing) -> StageCost:
        """One forward per calibration window: the source in its dtype, one micro-batch's forward, the statistics."""
        tokens = self.calibration_samples * self.calibration_seq_len
        flops = costing.forward_flops(costing.source_shape, self.calibration_seq_len) * tokens
        return costing.stage(tokens, 0, flops, costing.forward_only(self.calibration_seq_len))
