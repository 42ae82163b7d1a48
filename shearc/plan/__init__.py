"""The plan: the typed contract between the compiler, which writes it, and the runtime, which reads it."""

from .model import (
    PLAN_VERSION,
    DataPlan,
    DomainPlan,
    DownstreamTaskPlan,
    EvaluatePlan,
    ExportPlan,
    FinalizePlan,
    Plan,
    PrecisionPlan,
    PrunePlan,
    RecoverPlan,
    StagePlan,
    plan_schema,
)
from .read import read_plan, schema_problems

__all__ = ["PLAN_VERSION", "DataPlan", "DomainPlan", "DownstreamTaskPlan", "EvaluatePlan", "ExportPlan",
           "FinalizePlan", "Plan", "PrecisionPlan", "PrunePlan", "RecoverPlan", "StagePlan", "plan_schema", "read_plan",
           "schema_problems"]
