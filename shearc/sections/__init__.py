"""The spec sections the plan carries verbatim: method parameters and run settings.

The spec (compiler/spec) validates a YAML file into these, filling the reference papers'
defaults; the compiler writes them into the plan with every field spelled out (the plan's
schema requires each one); the runtime reads them from the plan and never sees a default.
"""

from typing import Annotated

from pydantic import Field

from .base import RuleError, Section
from .downstream import PRESETS, LmEvalSpec, LmEvalTaskSpec
from .mixer import ConstantMixerSpec, DRPruningSpec, DynamicBatchLoadingSpec
from .prune import (
    SECOND_ORDER_ESTIMATORS,
    ActivationPruneSpec,
    HardConcretePruneSpec,
    MagnitudePruneSpec,
    TaylorPruneSpec,
)
from .reconstruct import LeastSquaresReconstruction
from .recovery import DistillRecoverySpec, FullRecoverySpec, LoraRecoverySpec, NoRecoverySpec
from .registry import MIXERS, PRUNE_METHODS, RECONSTRUCTIONS, RECOVERIES
from .settings import EvalSpec, ExportSpec, RuntimeSpec, ScheduleSpec
from .training import TrainingStageSpec

PruneSpec = Annotated[PRUNE_METHODS.discriminated_union(), Field(description="Pruning method and its parameters.")]
MixerSpec = Annotated[MIXERS.discriminated_union(), Field(description="Data mixer and its parameters.")]
RecoverySpec = Annotated[RECOVERIES.discriminated_union(), Field(description="Recovery training after pruning.")]

__all__ = [
    "MIXERS",
    "PRESETS",
    "PRUNE_METHODS",
    "RECONSTRUCTIONS",
    "RECOVERIES",
    "SECOND_ORDER_ESTIMATORS",
    "ActivationPruneSpec",
    "ConstantMixerSpec",
    "DRPruningSpec",
    "DistillRecoverySpec",
    "DynamicBatchLoadingSpec",
    "EvalSpec",
    "ExportSpec",
    "FullRecoverySpec",
    "HardConcretePruneSpec",
    "LeastSquaresReconstruction",
    "LmEvalSpec",
    "LmEvalTaskSpec",
    "LoraRecoverySpec",
    "MagnitudePruneSpec",
    "MixerSpec",
    "NoRecoverySpec",
    "PruneSpec",
    "RecoverySpec",
    "RuleError",
    "RuntimeSpec",
    "ScheduleSpec",
    "Section",
    "TaylorPruneSpec",
    "TrainingStageSpec",
]
