"""Can the target be reached, and will it load as a standard model? Checked before any GPU time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shearc.errors import Problem

from .families import Shape
from .graph import UNIT_GRANULARITY, unit_counts
from .shape import count_params
from .source import SourceModel, meta_model
from .spec import Spec

_TARGET_DIMENSIONS = ("layers", "hidden", "heads", "kv_heads", "intermediate")


@dataclass(frozen=True)
class UnitChange:
    kind: str
    granularity: str
    source: int
    target: int


def target_field(spec: Spec, name: str) -> str:
    """Where to point an error about target dimension `name`."""
    return "target.params" if spec.target.is_budget else f"target.{name}"


def check_shape(spec: Spec, source: SourceModel, target: Shape) -> tuple[list[UnitChange], list[Problem]]:
    problems: list[Problem] = []
    base = source.shape
    for name in _TARGET_DIMENSIONS:
        wanted, have = getattr(target, name), getattr(base, name)
        if wanted > have:
            problems.append(Problem(f"{wanted} exceeds the source's {have}; pruning cannot grow a model",
                                    target_field(spec, name)))
    if target.heads % target.kv_heads:
        problems.append(Problem(f"heads ({target.heads}) must be divisible by kv_heads ({target.kv_heads})",
                                target_field(spec, "heads")))
    elif target.kv_heads <= base.kv_heads and target.group_size > base.group_size:
        problems.append(Problem(
            f"{target.heads} heads over {target.kv_heads} KV heads means {target.group_size} query heads per KV "
            f"group, more than the source's {base.group_size}: KV groups can be removed, not merged",
            target_field(spec, "kv_heads")))
    if problems:
        return [], problems

    before, after = unit_counts(base), unit_counts(target)
    changes = [UnitChange(kind, UNIT_GRANULARITY[kind], before[kind], after[kind])
               for kind in ("layer", "hidden", "kv_group", "intermediate")
               if after[kind] < before[kind]]
    if target.group_size < base.group_size:
        changes.append(UnitChange("query_head", "head", base.group_size, target.group_size))
    if not changes:
        problems.append(Problem("the target equals the source: nothing to prune", "target"))
    for change in changes:
        if change.granularity not in spec.prune.granularities:
            problems.append(Problem(
                f"the target shrinks {change.kind} ({change.source} -> {change.target}) but prune.granularities "
                f"{spec.prune.granularities} does not include {change.granularity!r}", "prune.granularities"))
        elif change.kind not in spec.prune.units:
            problems.append(Problem(
                f"method {spec.prune.method} cannot remove {change.kind} units: it prunes whole KV groups, so "
                f"heads / kv_heads must stay {base.group_size}", target_field(spec, "heads")))
    tp = spec.export.tensor_parallel
    if tp is not None:
        for name in ("heads", "kv_heads", "intermediate"):
            if getattr(target, name) % tp:
                problems.append(Problem(f"target {name} {getattr(target, name)} is not divisible by "
                                        f"tensor_parallel {tp}", "export.tensor_parallel"))
    limit = source.fingerprint_fields.get("max_position_embeddings")
    if isinstance(limit, int):
        for field, length in window_lengths(spec).items():
            if length > limit:
                problems.append(Problem(f"{length} exceeds the model's max_position_embeddings {limit}", field))
    return changes, problems


def window_lengths(spec: Spec) -> dict[str, int]:
    """Every window length the spec asks the source to read, by its field: the training stages', and the
    calibration windows' of scoring and of reconstruction."""
    lengths = {f"{section}.seq_len": stage.seq_len for section, stage in spec.training_stages().items()}
    if hasattr(spec.prune, "calibration_seq_len"):
        lengths["prune.calibration_seq_len"] = spec.prune.calibration_seq_len
    if spec.prune.reconstruct is not None:
        lengths["prune.reconstruct.calibration_seq_len"] = spec.prune.reconstruct.calibration_seq_len
    return lengths


def check_loads(source: SourceModel, target: Shape, target_config: dict[str, Any], spec: Spec) -> list[Problem]:
    """Instantiate the target config on meta: it must be a standard model of the same architecture."""
    try:
        model = meta_model(target_config)
    except Exception as exc:
        return [Problem(f"the target shape is not a valid {source.adapter.architecture} config: {exc}", "target")]
    problems = []
    if type(model).__name__ != source.adapter.architecture:
        problems.append(Problem(f"the target config builds {type(model).__name__}, not "
                                f"{source.adapter.architecture}", "target"))
    adapter = source.adapter  # the heads' contexts enter the head site (o_proj), head after head
    reads = model.get_submodule(f"{adapter.layer_prefix}.0.{adapter.head_site}").weight.shape[1]
    if reads != target.heads * target.head_dim:
        problems.append(Problem(f"head_dim is not kept: the target's {adapter.head_site} reads {reads} channels, "
                                f"expected {target.heads} x {target.head_dim}", target_field(spec, "heads")))
    counted = sum(p.numel() for p in model.parameters())
    expected = count_params(source, target)
    if counted != expected:  # the adapter's description and the real module disagree: a bug, not the user's fault
        raise AssertionError(f"target parameter count {counted:,} != adapter count {expected:,}")
    return problems
