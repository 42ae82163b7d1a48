"""spec -> plan: the compiler's passes, in order.

    resolve-source -> resolve-family-defaults -> build-graph -> resolve-target -> settle-reconstruction
      -> check-feasibility -> check-loads -> survey-data -> decide-window-start -> find-downstream-tasks -> estimate
      -> assemble-plan
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from shearc import __version__
from shearc.canonical import pretty_json, sha256_of, write_text_atomic
from shearc.errors import Problem
from shearc.plan import PLAN_VERSION, Plan
from shearc.sections import HardConcretePruneSpec, TrainingStageSpec

from . import estimates as est
from .data_cost import matching_files
from .downstream import resolve_downstream
from .families import Shape
from .feasibility import UnitChange, check_loads, check_shape
from .graph import build_graph, summarize_groups
from .load import load_spec
from .mask_reach import short_of_target
from .passes import Pass, run_passes
from .precision import decide as decide_precision
from .shape import budget_shape, count_params, exact_shape
from .source import SourceModel, resolve_source_config
from .spec import Spec
from .window_start import decide as decide_window
from .window_start import find_tokenizer
from .yaml_source import LoadedYaml

DEFAULT_EVAL_SEQ_LEN = 128  # LLM-Pruner's perplexity windows, when no stage trains
EVAL_SEQUENCES_WITHOUT_EVAL_STAGE = 16  # per domain, at a training stage's evals when `eval` is disabled
FINALIZE_CHECK_WINDOWS = 8  # windows of eval text the sliced model is checked on, spread over the domains
FINALIZE_CHECK_TOKENS = 128  # tokens per window


@dataclass
class Context:
    spec: Spec
    spec_dir: Path
    plan_dir: Path
    source: SourceModel | None = None
    graph: nx.DiGraph | None = None
    target: Shape | None = None
    target_config: dict[str, Any] | None = None
    changes: list[UnitChange] | None = None
    data: dict[str, Any] | None = None
    downstream: list[dict[str, Any]] | None = None
    stages: list[dict[str, Any]] | None = None
    plan: Plan | None = None
    warnings: list[str] = field(default_factory=list)

    def relocate(self, path: str) -> str:
        """A path written relative to the spec, rewritten relative to the plan file."""
        expanded = os.path.expanduser(path)
        if os.path.isabs(expanded):
            return expanded
        return os.path.relpath(self.spec_dir / expanded, self.plan_dir)


# --- passes ---------------------------------------------------------------------------------------


def resolve_source(ctx: Context) -> list[Problem]:
    ctx.source = resolve_source_config(ctx.spec.source, ctx.spec_dir)
    return []


def resolve_family_defaults(ctx: Context) -> list[Problem]:
    """What the spec leaves to the source's family: the projections LoRA adapts (checked when given)."""
    recovery = ctx.spec.recovery
    if "target_modules" not in type(recovery).model_fields:
        return []
    adapter = ctx.source.adapter
    known = list(adapter.lora_targets)
    if recovery.target_modules is None:
        ctx.spec = ctx.spec.model_copy(update={"recovery": recovery.model_copy(update={"target_modules": known})})
        return []
    return [Problem(f"{module!r} is not a projection {adapter.architecture} adapts with LoRA; known: "
                    f"{', '.join(known)}", f"recovery.target_modules[{index}]")
            for index, module in enumerate(recovery.target_modules) if module not in known]


def build_dependency_graph(ctx: Context) -> list[Problem]:
    ctx.graph = build_graph(ctx.source)
    return []


def resolve_target(ctx: Context) -> list[Problem]:
    target = ctx.spec.target
    if target.is_budget:
        shape, problems = budget_shape(ctx.source, target.params, ctx.spec.prune.granularities, target.multiple_of)
        ctx.target = shape
        return problems
    ctx.target = exact_shape(ctx.source, target)
    return []


def settle_reconstruction(ctx: Context) -> list[Problem]:
    """What the spec leaves to the source and the target about the refit: its window length (the model's context,
    up to the default) and, where the spec did not ask for it, whether there is anything to refit (only output
    projections that read pruned heads or MLP channels are refit)."""
    prune, source, target = ctx.spec.prune, ctx.source.shape, ctx.target
    refit = prune.reconstruct
    if refit is None:
        return []
    if "reconstruct" not in prune.model_fields_set and (target.heads, target.intermediate) == (
            source.heads, source.intermediate):
        refit = None
    else:
        refit = refit.resolved(ctx.source.fingerprint_fields.get("max_position_embeddings"))
    ctx.spec = ctx.spec.model_copy(update={"prune": prune.model_copy(update={"reconstruct": refit})})
    return []


def check_feasibility(ctx: Context) -> list[Problem]:
    ctx.changes, problems = check_shape(ctx.spec, ctx.source, ctx.target)
    ctx.target_config = ctx.source.adapter.config_for(ctx.source.config, ctx.target)
    return problems


def check_target_loads(ctx: Context) -> list[Problem]:
    return check_loads(ctx.source, ctx.target, ctx.target_config, ctx.spec)


def survey_data(ctx: Context) -> list[Problem]:
    data = ctx.spec.data
    weights = data.normalised_weights()
    domains = []
    for domain, weight in zip(data.domains, weights, strict=True):
        domains.append({
            "name": domain.name,
            "weight": round(weight, 12),  # normalised; rounding keeps 0.67 from printing as 0.6699999999999999
            "reference_loss": domain.reference_loss,
            "train": [ctx.relocate(p) for p in domain.train],
            "eval": [ctx.relocate(p) for p in domain.eval],
            "train_found": _found(ctx.spec_dir, domain.train),
            "eval_found": _found(ctx.spec_dir, domain.eval),
        })
    ctx.data = {"tokenizer": _model_ref(ctx, data.tokenizer or ctx.spec.source.model),
                "text_field": data.text_field, "eval_fraction": data.eval_fraction, "domains": domains}
    return []


def decide_window_start(ctx: Context) -> list[Problem]:
    """Whether every window begins with BOS: the spec's choice, else the source's tokenizer (window_start.py)."""
    spec = ctx.spec
    tokenizer = find_tokenizer(spec.data.tokenizer or spec.source.model, ctx.spec_dir, spec.source.trust_remote_code)
    decided = decide_window(spec.data.window_bos, tokenizer, ctx.source.config, ctx.source.adapter)
    if isinstance(decided, Problem):
        return [decided]
    if decided.warning:
        ctx.warnings.append(decided.warning)
    ctx.data = {**ctx.data, **decided.as_dict()}
    return []


def find_downstream_tasks(ctx: Context) -> list[Problem]:
    """eval.lm_eval's tasks, presets expanded, each with its data found locally (or refused)."""
    lm_eval = ctx.spec.eval.lm_eval if ctx.spec.eval.enabled else None
    ctx.downstream, problems = resolve_downstream(lm_eval, ctx.spec_dir, ctx.relocate)
    return problems


def estimate_stages(ctx: Context) -> list[Problem]:
    spec, source, target = ctx.spec, ctx.source, ctx.target
    budget = spec.runtime.device_memory_gib * est.GIB
    stages: list[dict[str, Any]] = []

    def estimate(tokens: int, steps: int, flops: int, memory: est.Memory, stage: str, *,
                 whole: bool = True) -> dict[str, Any]:
        """The estimate of `stage` (or, not `whole`, of a part of it: no warning of its own), with a warning when it
        does not fit."""
        fits = memory.total <= budget
        if not fits and whole:
            ctx.warnings.append(f"stage {stage} needs about {memory.total / est.GIB:.1f} GiB per device, more "
                                f"than runtime.device_memory_gib {spec.runtime.device_memory_gib:g}")
        return {"tokens": tokens, "steps": steps, "flops": flops, "memory_bytes": memory.as_dict(),
                "fits_device": fits,
                "host_memory_bytes": est.host_memory(stage, source, target, spec, memory.total)}

    costing = est.Costing(source, target, spec, frozenset(c.kind for c in ctx.changes))

    def costed(cost: est.StageCost, stage: str, *, whole: bool = True) -> dict[str, Any]:
        return estimate(cost.tokens, cost.steps, cost.flops, cost.memory, stage, whole=whole)

    training_evals = spec.eval.sequences_per_domain if spec.eval.enabled else EVAL_SEQUENCES_WITHOUT_EVAL_STAGE
    prune_cost = spec.prune.cost(costing)
    reconstruct = spec.prune.reconstruct.cost(costing) if spec.prune.reconstruct else None
    if reconstruct is not None:
        ctx.warnings.extend(thin_calibration(spec, target, costing.pruned_kinds))
    if isinstance(spec.prune, HardConcretePruneSpec):
        ctx.warnings.extend(short_of_target(spec.prune, spec.schedule, source, target, [c.kind for c in ctx.changes]))
    # the source FSDP2 trains is read sharded (runtime/run.py trains_source_sharded); any other is loaded whole
    loads_source = not (est.sharding(spec) and isinstance(spec.prune, TrainingStageSpec))
    source_held = est.count_params(source, source.shape) * est.source_bytes(spec) if loads_source else 0
    prune_whole = est.loaded_whole(est.followed_by(prune_cost, reconstruct), source_held)
    stages.append({"stage": "prune", "params": spec.prune.model_dump(mode="json"),
                   "eval_sequences": training_evals if isinstance(spec.prune, TrainingStageSpec) else None,
                   "estimate": costed(prune_whole, "prune"),
                   "reconstruction": costed(reconstruct, "prune", whole=False) if reconstruct else None})
    check = {"windows": FINALIZE_CHECK_WINDOWS, "tokens": FINALIZE_CHECK_TOKENS}
    stages.append({"stage": "finalize", "check": check, "estimate": estimate(
        0, 0, 0, est.finalize_memory(source, target, spec, check["tokens"]), "finalize")})
    if spec.recovery.method != "none":
        stages.append({"stage": "recover", "params": spec.recovery.model_dump(mode="json"),
                       "eval_sequences": training_evals, "estimate": costed(
                           est.loaded_whole(spec.recovery.cost(costing), est.recovery_loads(spec, costing)),
                           "recover")})
    if spec.eval.enabled:
        params = spec.eval.model_dump(mode="json")
        params["seq_len"] = eval_seq_len(spec)
        tokens = len(spec.data.domains) * spec.eval.sequences_per_domain * params["seq_len"]
        flops = tokens * (est.forward_flops_per_token(source, source.shape, params["seq_len"])
                          + est.forward_flops_per_token(source, target, params["seq_len"]))
        latency_of = est.latency_models(source, target, spec, params["seq_len"])
        weights = est.evaluate_weights(source, target, spec, latency_of, downstream=bool(ctx.downstream))
        memory = est.inference_memory(source, spec, params["seq_len"], weights)
        stages.append({"stage": "evaluate", "params": params, "downstream": ctx.downstream, "latency_of": latency_of,
                       "estimate": estimate(2 * tokens, 0, flops, memory, "evaluate")})
    stages.append({"stage": "export", "params": spec.export.model_dump(mode="json"), "estimate": estimate(
        0, 0, 0, est.export_memory(source, target, spec), "export")})
    ctx.stages = stages
    mixer = spec.mixer
    if mixer.method == "drpruning" and mixer.fit_reference:
        for section, stage in spec.training_stages().items():
            if est.drpruning_fits(stage.steps, stage.eval_interval, mixer) == 0:
                ctx.warnings.append(
                    f"{section}: {stage.steps} steps with an eval every {stage.eval_interval} never record "
                    f"mixer.fit_min_points ({mixer.fit_min_points}) evals, so DRPruning's reference losses never "
                    "move from the static ones; lower the eval_interval or mixer.fit_min_points")
    return []


# Below this many calibration tokens per kept input channel, the least-squares refit fits the calibration windows
# better than other text: on SmolLM2 (docs/BENCHMARKS.md) 3.6 tokens per channel still halved a one-shot prune's
# loss rise, 1.3 made a short recovery end worse than selection alone did.
MIN_TOKENS_PER_REFIT_CHANNEL = 4


def thin_calibration(spec: Spec, target: Shape, pruned_kinds: frozenset[str]) -> list[str]:
    """A warning when reconstruction's calibration tokens are few for the widest projection input it refits."""
    widest = max(est.refit_widths(target, pruned_kinds), default=0)
    tokens = spec.prune.reconstruct.tokens
    if tokens >= MIN_TOKENS_PER_REFIT_CHANNEL * widest:
        return []
    return [f"prune.reconstruct: {tokens:,} calibration tokens for a refit of {widest:,} kept input channels per "
            f"projection: fewer than {MIN_TOKENS_PER_REFIT_CHANNEL} per channel, the least-squares refit can fit the "
            f"calibration windows better than other text; raise calibration_samples or calibration_seq_len"]


def eval_seq_len(spec: Spec) -> int:
    if spec.eval.seq_len is not None:
        return spec.eval.seq_len
    lengths = [stage.seq_len for stage in spec.training_stages().values()]
    return max(lengths, default=DEFAULT_EVAL_SEQ_LEN)


def assemble_plan(ctx: Context) -> list[Problem]:
    spec, source, target = ctx.spec, ctx.source, ctx.target
    seq_len = max([eval_seq_len(spec), *(s.seq_len for s in spec.training_stages().values())])
    source_info = _model_info(source, source.shape, seq_len)
    target_info = _model_info(source, target, seq_len)
    runtime = spec.runtime.model_dump(mode="json")
    runtime["output_dir"] = ctx.relocate(spec.runtime.output_dir) if spec.runtime.output_dir \
        else os.path.join("runs", spec.name)
    body = {
        "plan_version": list(PLAN_VERSION),
        "shearc_version": __version__,
        "spec": {"name": spec.name, "description": spec.description,
                 "sha256": sha256_of(spec.model_dump(mode="json"))},
        "source": {
            "model": _model_ref(ctx, spec.source.model),
            "revision": spec.source.revision,
            "trust_remote_code": spec.source.trust_remote_code,
            "architecture": source.adapter.architecture,
            "config_origin": source.origin,
            "config_path": str(source.config_path) if source.origin == "hf-cache"
            else os.path.relpath(source.config_path.resolve(), ctx.plan_dir),
            "fingerprint": source.fingerprint,
            "fingerprint_fields": source.fingerprint_fields,
            "model_info": source_info,
        },
        "target": {
            "requested": "params" if spec.target.is_budget else "shape",
            "budget": spec.target.params,
            "config": ctx.target_config,
            "model_info": target_info,
            "params_ratio": target_info["params"] / source_info["params"],
            "pruned_units": [asdict(c) for c in ctx.changes],
        },
        "groups": [g.as_dict() for g in summarize_groups(ctx.graph, source.adapter.layer_prefix)],
        "data": ctx.data,
        "mixer": spec.mixer.model_dump(mode="json"),
        "schedule": spec.schedule.model_dump(mode="json"),
        "runtime": runtime,
        "precision": decide_precision(spec.runtime.precision).as_dict(),
        "stages": ctx.stages,
        "warnings": ctx.warnings,
    }
    ctx.plan = Plan.model_validate({**body, "plan_sha256": sha256_of(body)})
    return []


PASSES = [
    Pass("resolve-source", (), ("source",), resolve_source),
    Pass("resolve-family-defaults", ("source",), (), resolve_family_defaults),
    Pass("build-graph", ("source",), ("graph",), build_dependency_graph),
    Pass("resolve-target", ("source",), ("target",), resolve_target),
    Pass("settle-reconstruction", ("source", "target"), (), settle_reconstruction),
    Pass("check-feasibility", ("source", "target"), ("changes", "target_config"), check_feasibility),
    Pass("check-loads", ("target_config",), (), check_target_loads),
    Pass("survey-data", (), ("data",), survey_data),
    Pass("decide-window-start", ("source", "data"), (), decide_window_start),
    Pass("find-downstream-tasks", (), ("downstream",), find_downstream_tasks),
    Pass("estimate", ("source", "target", "changes", "downstream"), ("stages",), estimate_stages),
    Pass("assemble-plan", ("source", "graph", "target", "data", "stages"), ("plan",), assemble_plan),
]


# --- helpers ----------------------------------------------------------------------------------


def _model_info(source: SourceModel, shape: Shape, seq_len: int) -> dict[str, Any]:
    return {"shape": shape.as_dict(), "params": count_params(source, shape),
            "non_embedding_params": est.non_embedding(source, shape),
            "forward_flops_per_token": est.forward_flops_per_token(source, shape, seq_len)}


def _model_ref(ctx: Context, model: str) -> str:
    """A local directory, rewritten relative to the plan; otherwise a hub id, kept as written."""
    return ctx.relocate(model) if (ctx.spec_dir / os.path.expanduser(model)).exists() else model


def _found(spec_dir: Path, patterns: list[str]) -> dict[str, int]:
    files = matching_files(spec_dir, patterns)
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


# --- entry points -------------------------------------------------------------------------------


def compile_loaded(spec: Spec, loaded: LoadedYaml, spec_path: Path, plan_dir: Path) -> Plan:
    context = Context(spec=spec, spec_dir=spec_path.resolve().parent, plan_dir=plan_dir.resolve())
    run_passes(PASSES, context, loaded)
    return context.plan


def compile_spec(spec_path: str | Path, plan_path: str | Path = "plan.json") -> Plan:
    """Validate and compile; raises UserError listing every problem. Writes nothing."""
    spec_path = Path(spec_path)
    spec, loaded = load_spec(spec_path)
    return compile_loaded(spec, loaded, spec_path, Path(plan_path).parent)


def plan_text(plan: Plan) -> str:
    return pretty_json(plan.model_dump(mode="json"))


def write_plan(plan: Plan, plan_path: str | Path) -> None:
    write_text_atomic(plan_path, plan_text(plan))
