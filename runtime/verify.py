"""Check a plan against the model it will run on, before any work; every mismatch in one error.

The runtime reads only the plan: version, schema and hash (shearc.plan.read), then the source
model's config.json, compared field by field with the plan's fingerprint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shearc.compiler.source import SourceModel, introspect
from shearc.errors import Problem, UserError
from shearc.plan import Plan, read_plan

from .integrity import safetensors_problem


@dataclass(frozen=True)
class VerifiedPlan:
    plan: Plan
    plan_dir: Path
    model_dir: Path  # where the source weights are
    source: SourceModel  # the structure of the model found, on meta


def locate_model(reference: str, plan_dir: Path, revision: str | None) -> Path | None:
    """A local directory (relative to the plan) or a snapshot in the local Hugging Face cache."""
    local = plan_dir / reference
    if (local / "config.json").is_file():
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(reference, revision=revision, local_files_only=True))
    except Exception:  # not cached (or not a repo id): reported by the caller
        return None


def verify(plan_path: str | Path) -> VerifiedPlan:
    plan = read_plan(plan_path)
    plan_dir = Path(plan_path).resolve().parent
    source = plan.source
    model_dir = locate_model(source.model, plan_dir, source.revision)
    if model_dir is None:
        raise UserError([Problem(f"source model {source.model!r} is neither a directory next to the plan nor in "
                                 "the local Hugging Face cache; download it first (shearc never downloads weights "
                                 "during a run)", "source.model", str(plan_path))], title="source model not found")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    found = introspect(config, "local", model_dir / "config.json")
    problems = [
        Problem(f"the plan was compiled for {key} = {expected!r}, the model at {model_dir} has {actual!r}",
                f"source.fingerprint_fields.{key}", str(plan_path))
        for key, expected in source.fingerprint_fields.items()
        if (actual := found.fingerprint_fields.get(key)) != expected
    ]
    if problems:
        raise UserError(problems, title="the plan does not match the source model; recompile the spec against it")
    weight_problems = check_weight_files(model_dir)
    if weight_problems:
        raise UserError(weight_problems, title="the source model's weights cannot be read")
    return VerifiedPlan(plan=plan, plan_dir=plan_dir, model_dir=model_dir, source=found)


def check_weight_files(model_dir: Path) -> list[Problem]:
    """Safetensors weights only (pickled .bin files can run code when loaded), each file whole: its header
    readable and its length what the header describes (a copy cut short fails here, not halfway through a run)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in model_dir.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        what = (f"only pickled weights ({', '.join(pickled)}); shearc loads safetensors only: convert them once, "
                "e.g. AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)"
                if pickled else "no weights (*.safetensors)")
        return [Problem(what, file=str(model_dir))]
    return [Problem(f"{problem}; copy it again", file=str(path)) for path in files
            if (problem := safetensors_problem(path)) is not None]
