"""Nothing in a spec is accepted and then ignored.

Every field of every spec section (each method's variant included) lands in the plan, and the
runtime reads it: tiny plans that together use every method, mixer and recovery are run with a
typed plan that records which of its fields the runtime reads (attribute access, not copies), and
every spec-derived field must be read by some run. The few fields that act at compile time only are
listed below, each with what it changes there.
"""

import json
from typing import Any

import pytest
from pydantic import BaseModel

from shearc.cli import main
from shearc.compiler.spec import DataSpec, DomainSpec
from shearc.corpus.tasks import write_task
from shearc.sections import (
    MIXERS,
    PRUNE_METHODS,
    RECONSTRUCTIONS,
    RECOVERIES,
    EvalSpec,
    ExportSpec,
    LmEvalSpec,
    LmEvalTaskSpec,
    RuntimeSpec,
    ScheduleSpec,
)

from .helpers import tiny_project

# Spec section -> where its fields land in the plan (a stage's params, by stage name).
SECTIONS: dict[str, tuple[list[type[BaseModel]], tuple[str, ...]]] = {
    "prune": ([PRUNE_METHODS.get(n) for n in PRUNE_METHODS], ("stages", "stage:prune", "params")),
    "prune.reconstruct": ([RECONSTRUCTIONS.get(n) for n in RECONSTRUCTIONS], ("stages", "stage:prune", "params",
                                                                              "reconstruct")),
    "mixer": ([MIXERS.get(n) for n in MIXERS], ("mixer",)),
    "recovery": ([RECOVERIES.get(n) for n in RECOVERIES], ("stages", "stage:recover", "params")),
    "schedule": ([ScheduleSpec], ("schedule",)),
    "runtime": ([RuntimeSpec], ("runtime",)),
    "eval": ([EvalSpec], ("stages", "stage:evaluate", "params")),
    "eval.lm_eval": ([LmEvalSpec], ("stages", "stage:evaluate", "params", "lm_eval")),
    "eval.lm_eval.tasks": ([LmEvalTaskSpec], ("stages", "stage:evaluate", "params", "lm_eval", "tasks", "*")),
    "export": ([ExportSpec], ("stages", "stage:export", "params")),
    "data": ([DataSpec], ("data",)),
    "data.domains": ([DomainSpec], ("data", "domains", "*")),
}

# Fields that act when compiling, not when running: what each changes.
COMPILE_TIME = {
    "prune.granularities": "which unit kinds the compiler lets the target shrink (a target needing another is refused)",
    "prune.method": "selects the method's parameters; runtime reads it as prune.method",
    "runtime.device_memory_gib": "each stage's estimate.fits_device and its warning",
    "runtime.precision": "resolved with the hardware into plan.precision (cpu, cuda), which the runtime reads "
                         "(tests/compiler/test_precision.py)",
    "export.tensor_parallel": "refuses a target whose heads, kv_heads or intermediate do not divide by it",
    "data.eval_fraction": "how compile's data survey splits",
    "eval.enabled": "whether the plan has an evaluate stage at all",
    # lm-eval's tasks are resolved into the evaluate stage's `downstream` list, which the runtime reads
    "eval.lm_eval.preset": "its tasks, shots and metrics join the evaluate stage's downstream list",
    "eval.lm_eval.tasks": "each task (its data found locally) joins the evaluate stage's downstream list",
    "eval.lm_eval.tasks.task": "the downstream task's name", "eval.lm_eval.tasks.path": "the downstream task's path",
    "eval.lm_eval.tasks.metric": "the downstream task's metric, its filter written out",
    "eval.lm_eval.tasks.num_fewshot": "the downstream task's num_fewshot",
}


def _paths(value: Any, path: tuple, paths: dict[int, tuple]) -> None:
    """id of every model inside the typed plan -> its path (a stage known by its name, other list items alike)."""
    if isinstance(value, BaseModel):
        paths[id(value)] = path
        for field in type(value).model_fields:
            _paths(value.__dict__[field], (*path, field), paths)
    elif isinstance(value, list | tuple):
        for item in value:
            _paths(item, (*path, f"stage:{item.stage}" if path == ("stages",) else "*"), paths)


def record_reads(plan: BaseModel, reads: set, patch: pytest.MonkeyPatch) -> None:
    """From now on, reading a field of `plan` (or of a model inside it) notes its path in `reads`; copies made by
    pydantic (model_dump) read nothing."""
    paths: dict[int, tuple] = {}
    _paths(plan, (), paths)
    original = BaseModel.__getattribute__

    def recording(self, name):
        path = paths.get(id(self))
        if path is not None and name in type(self).model_fields:
            reads.add((*path, name))
        return original(self, name)

    patch.setattr(BaseModel, "__getattribute__", recording)


RUNS = {  # together: every prune method, mixer (and DRPruning signal), recovery, evaluation and export
    "hard-concrete": {"prune": {"method": "hard-concrete", "steps": 4, "global_batch": 4, "seq_len": 16,
                                "warmup_steps": 1, "eval_interval": 2},
                      "mixer": {"method": "drpruning", "reference": "source", "signal": "train-ema",
                                "fit_min_points": 2, "fit_min_progress": 0.0},
                      "recovery": {"method": "full", "steps": 4, "global_batch": 4, "seq_len": 16,
                                   "warmup_steps": 1, "eval_interval": 2},
                      "eval": {"enabled": True, "sequences_per_domain": 2, "seq_len": 16}},
    "taylor": {"prune": {"method": "taylor", "calibration_samples": 2, "calibration_seq_len": 16},
               "mixer": {"method": "dynamic-batch-loading", "reference": "source"},
               "recovery": {"method": "lora", "steps": 4, "global_batch": 4, "seq_len": 16, "warmup_steps": 1,
                            "eval_interval": 2}},
    "magnitude": {"prune": {"method": "magnitude", "reconstruct": {"method": "least-squares", "calibration_samples": 2,
                                                                   "calibration_seq_len": 16}},
                  "mixer": {"method": "constant"},
                  "eval": {"sequences_per_domain": 2, "seq_len": 16,
                           "lm_eval": {"tasks": [{"path": "tasks/arithmetic_choice.yaml", "metric": "acc"}],
                                       "limit": 2, "batch_size": 2}}},
    "activation": {"prune": {"method": "activation", "calibration_samples": 2, "calibration_seq_len": 16},
                   "recovery": {"method": "distill", "student": "lora", "temperature": 2.0, "top_k": 8,
                                "lm_weight": 0.5, "steps": 4, "global_batch": 4, "seq_len": 16, "warmup_steps": 1,
                                "eval_interval": 2}},
}


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    """The plan keys read by the runtime over the runs above, and one compiled plan per run."""
    import shearc.runtime.run as run_module

    seen: set = set()
    plans = {}
    original = run_module.verify
    patch = pytest.MonkeyPatch()

    def recording(path):
        verified = original(path)
        record_reads(verified.plan, seen, patch)
        return verified

    patch.setattr(run_module, "verify", recording)
    try:
        for name, sections in RUNS.items():
            root = tmp_path_factory.mktemp(name)
            write_task(root, count=4)  # the generated lm-eval task, for the run that evaluates it
            granular = {"granularities": ["layer", "head", "intermediate", "hidden"]}
            sections = {**sections, "prune": {**sections["prune"], **granular},
                        "target": {"layers": 3, "hidden": 32, "heads": 4, "intermediate": 96},
                        "export": {"dtype": "float32"}}
            plan = tiny_project(root, "llama-mha", sections)
            plans[name] = json.loads(plan.read_text())
            out = [] if name == "magnitude" else ["--out", str(root / "run")]  # one run where the plan says
            assert main(["run", str(plan), *out]) == 0
    finally:
        patch.undo()
    return seen, plans


def _fields():
    for section, (models, place) in SECTIONS.items():
        for model in models:
            for field in model.model_fields:
                if section == "data" and field == "domains":
                    continue
                yield section, place, field


@pytest.mark.parametrize(("section", "place", "field"), list(_fields()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_spec_field_reaches_the_plan_and_the_runtime_reads_it(reads, section, place, field):
    seen, plans = reads
    name, path = f"{section}.{field}", (*place, field)
    assert any(_holds(plan, path) for plan in plans.values()) or name in COMPILE_TIME, \
        f"spec field {name} never reaches the plan ({'.'.join(path)})"
    if name not in COMPILE_TIME:
        assert path in seen, f"spec field {name} (plan {'.'.join(path)}) is never read by the runtime"


def _holds(value, path) -> bool:
    """Whether a plain plan has `path` (stages found by name, list items by *)."""
    if not path:
        return True
    head, rest = path[0], path[1:]
    if isinstance(value, list):
        items = [v for v in value if head == "*" or (head.startswith("stage:") and v.get("stage") == head[6:])]
        return any(_holds(item, rest) for item in items)
    return isinstance(value, dict) and head in value and _holds(value[head], rest)
