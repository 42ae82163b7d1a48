"""`shearc run plan.json`: verify, load, then each stage of the plan in order.

    RUN_DIR/model/         the dense model (save_pretrained, safetensors, tokenizer, plan, card)
    RUN_DIR/metrics.jsonl  what happened, one JSON object per line (each stage: seconds, peak memory)
    RUN_DIR/checkpoints/   the last few checkpoints: every runtime.checkpoint_interval steps, on
                           SIGTERM/SIGINT, and at the end of every stage but export
    RUN_DIR/masks.safetensors, RUN_DIR/finalize_check.json, RUN_DIR/report.json, RUN_DIR/done.json

Running the plan again on the same directory resumes from the newest checkpoint (nothing a
finished stage did is done again); a finished run is not redone; a checkpoint of another plan is
refused. The source is loaded only when a stage left to run works on it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from shearc.canonical import pretty_json, remove_staging, write_text_atomic
from shearc.compiler.window_start import window_start_problems
from shearc.errors import Problem, UserError
from shearc.plan import EvaluatePlan, FinalizePlan, Plan, PrunePlan, RecoverPlan
from shearc.sections import HardConcretePruneSpec
from shearc.sections.downstream import NEEDS_EXTRA

from . import distributed
from . import stages as _stages  # noqa: F401  (registration)
from .data import load_tokenizer
from .downstream import lm_eval_available
from .lock import run_directory_lock
from .memory import peaks, release_freed, reset_peaks, resident_bytes
from .metrics import MetricsLog
from .mixers import MIXER_IMPLEMENTATIONS
from .models import load_source_weights
from .output import run_output
from .precision import describe as describe_precision
from .precision import source_dtype
from .stages.base import STAGES, RunContext
from .stages.prune import PRUNE_IMPLEMENTATIONS, RECONSTRUCTION_IMPLEMENTATIONS
from .stages.recover import RECOVERY_IMPLEMENTATIONS
from .train.checkpoint import Checkpoint, Checkpoints
from .train.stop import stop_on_signals
from .verify import VerifiedPlan, verify


def unsupported(plan: Plan) -> list[str]:
    """What in the plan this shearc cannot execute yet."""
    missing = [] if plan.mixer.method in MIXER_IMPLEMENTATIONS else [f"mixer {plan.mixer.method}"]
    for stage in plan.stages:
        if stage.stage not in STAGES:
            missing.append(f"stage {stage.stage}")
        elif isinstance(stage, PrunePlan) and stage.params.method not in PRUNE_IMPLEMENTATIONS:
            missing.append(f"prune method {stage.params.method}")
        elif (isinstance(stage, PrunePlan) and stage.params.reconstruct is not None
              and stage.params.reconstruct.method not in RECONSTRUCTION_IMPLEMENTATIONS):
            missing.append(f"reconstruction method {stage.params.reconstruct.method}")
        elif isinstance(stage, RecoverPlan) and stage.params.method not in RECOVERY_IMPLEMENTATIONS:
            missing.append(f"recovery method {stage.params.method}")
    return missing


def missing_extras(plan: Plan) -> list[str]:
    """Optional packages the plan needs that this environment lacks."""
    wants_lm_eval = any(isinstance(stage, EvaluatePlan) and stage.downstream for stage in plan.stages)
    return [f"eval.lm_eval {NEEDS_EXTRA}"] if wants_lm_eval and not lm_eval_available() else []


def _device(plan: Plan) -> torch.device:
    wanted = plan.runtime.device
    if wanted == "cuda" and not torch.cuda.is_available():
        raise UserError([Problem("the plan asks for CUDA, but no CUDA device is visible", "runtime.device")],
                        title="device not available")
    if wanted != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())  # torchrun's LOCAL_RANK, set by initialize()
    return torch.device("cpu")


def _finished(run_dir: Path, plan: Plan) -> bool:
    marker = run_dir / "done.json"
    if not marker.is_file():
        return False
    done = json.loads(marker.read_text(encoding="utf-8"))
    if done["plan_sha256"] != plan.plan_sha256:
        raise UserError([Problem(f"{run_dir} holds a finished run of another plan (sha256 {done['plan_sha256'][:12]}); "
                                 "choose another --out", "runtime.output_dir")], title="run directory in use")
    return (run_dir / "model" / "config.json").is_file()


def restore(context: RunContext, checkpoint: Checkpoint) -> None:
    """Put back what the stages before `checkpoint` produced: the stage that wrote it restores what it handed on
    when it completed; an unfinished stage restores itself when it runs again (context.resume)."""
    context.checks = dict(checkpoint.meta["checks"])
    if checkpoint.complete:
        stage_plan = context.plan.stages[checkpoint.stage_index]
        STAGES.get(stage_plan.stage)(stage_plan).restore(context, checkpoint)


def needs_source(plan: Plan, first: int) -> bool:
    """Whether a stage from `first` on works on the source in memory (later ones reload it if they need it)."""
    return any(isinstance(stage, PrunePlan | FinalizePlan) for stage in plan.stages[first:])


def trains_source_sharded(plan: Plan, first: int) -> bool:
    """Whether the first stage to run trains the source (hard-concrete pruning), which FSDP2 then reads sharded from
    its files: no process holds it whole (a 70B source in fp32 fits no device). Scoring methods take the whole
    source in every process, and a later stage put back from a checkpoint shards it itself."""
    stage = plan.stages[first] if first < len(plan.stages) else None
    return isinstance(stage, PrunePlan) and isinstance(stage.params, HardConcretePruneSpec)


def run_plan(plan_path: str | Path, out: str | Path | None = None, console: Console | None = None, *,
             finalize_tolerance: float | None = None) -> Path:
    """`finalize_tolerance` replaces the finalize check's derived tolerance (a user's informed override)."""
    joined = not distributed.active()
    distributed.initialize()
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return _run(plan_path, out, console, finalize_tolerance)
    finally:  # leave the process as it was: callers may run other work after a plan
        torch.use_deterministic_algorithms(deterministic)
        if joined:
            distributed.shutdown()


def _run(plan_path: str | Path, out: str | Path | None, console: Console | None,
         finalize_tolerance: float | None) -> Path:
    console = console or Console(stderr=True, soft_wrap=True, quiet=not distributed.is_main())
    verified = verify(plan_path)
    plan = verified.plan
    missing = unsupported(plan)
    if missing:
        raise UserError([Problem(f"this shearc cannot run {item} yet", file=str(plan_path)) for item in missing],
                        title="plan needs parts of the runtime that have not landed")
    extras = missing_extras(plan)
    if extras:
        raise UserError([Problem(item, file=str(plan_path)) for item in extras], title="missing optional package")
    expected, started = plan.runtime.devices, distributed.world_size()
    if started != expected:  # the batch split, the sharding and the memory estimate all assumed `expected`
        launch = f"torchrun --nproc-per-node {expected} -m shearc.cli run" if expected > 1 else "shearc run"
        raise UserError([Problem(f"the plan was compiled for {expected} process(es), but {started} started; run it "
                                 f"with `{launch} {plan_path}`, or recompile with runtime.devices: {started}",
                                 "runtime.devices", str(plan_path))], title="wrong number of processes")
    run_dir = Path(out) if out is not None else verified.plan_dir / plan.runtime.output_dir
    if _finished(run_dir, plan):
        console.print(f"{run_dir} already holds this finished run; nothing to do", markup=False)
        return run_dir
    tokenizer = checked_tokenizer(verified)  # before the run directory is made: a wrong one leaves nothing behind
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError([Problem("exists and is not a folder; give the run a folder (--out)", file=str(run_dir))],
                        title="cannot use the run directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError([Problem(f"cannot create it: {exc.strerror or exc}", file=str(run_dir))],
                        title="cannot use the run directory") from None
    with run_directory_lock(run_dir, lambda text: console.print(text, markup=False)), \
            run_output(run_dir, console) as say:
        return _run_stages(verified, tokenizer, run_dir, say, finalize_tolerance)


def checked_tokenizer(verified: VerifiedPlan) -> Any:
    """The plan's tokenizer, refused (exit 2) when it has more tokens than the model has embeddings, or when it
    begins a text otherwise than the plan's windows begin (data.window_bos)."""
    plan = verified.plan
    tokenizer = load_tokenizer(plan.data.tokenizer, verified.plan_dir, plan.source.trust_remote_code)
    where = str(verified.plan_dir / plan.data.tokenizer)
    problems = window_start_problems(plan.data.window_bos, plan.data.window_bos_origin, tokenizer, where)
    if problems:
        raise UserError(problems, title="the tokenizer does not begin texts as the plan's windows begin")
    vocab = verified.source.vocab
    if len(tokenizer) > vocab:
        raise UserError([Problem(f"the tokenizer has {len(tokenizer):,} tokens, the source model embeds {vocab:,}: "
                                 "its ids would index past the embedding; use the model's own tokenizer",
                                 "data.tokenizer", where)],
                        title="tokenizer does not match the model")
    return tokenizer


def per_process(name: str, value: int | None) -> dict[str, list[int]]:
    """`value` of every process, as `NAME_per_process` (rank order), when more than one runs (a collective); else
    nothing."""
    if distributed.world_size() == 1 or value is None:
        return {}
    each = np.zeros(distributed.world_size())
    each[distributed.rank()] = value
    return {f"{name}_per_process": [int(v) for v in distributed.summed(each)]}


def _run_stages(verified: VerifiedPlan, tokenizer: Any, run_dir: Path, say: Callable[[str], None],
                finalize_tolerance: float | None) -> Path:
    """The plan's stages in RUN_DIR (locked by this run), resumed from its newest checkpoint; `say` prints a line
    of the run's own (output.py)."""
    plan = verified.plan
    checkpoints = Checkpoints(run_dir / "checkpoints", plan.plan_sha256, plan.runtime.keep_checkpoints)
    # refuses another plan's checkpoints before anything is written here; passes over damaged ones
    resume = checkpoints.latest(warn=say)
    if distributed.is_main():  # beside metrics.jsonl, so `shearc report` can read a run that stopped early
        write_text_atomic(run_dir / "plan.json", pretty_json(plan.as_json()))
        left = remove_staging(run_dir) + remove_staging(run_dir / "checkpoints")
        if left:  # the lock is ours: no other process is writing them
            say(f"removed what a run killed while writing left unfinished: {', '.join(left)}")
    torch.manual_seed(plan.runtime.seed)
    if plan.runtime.deterministic:
        torch.use_deterministic_algorithms(True)
    device = _device(plan)
    metrics = MetricsLog(run_dir / "metrics.jsonl" if distributed.is_main() else None)
    first = 0 if resume is None else resume.stage_index + (1 if resume.complete else 0)
    metrics.write("memory", resident_bytes_before_models=resident_bytes(),  # the baseline of the stages' peaks
                  **per_process("resident_bytes_before_models", resident_bytes()))
    context = RunContext(verified=verified, run_dir=run_dir, device=device, metrics=metrics, model=None,
                         tokenizer=tokenizer, checkpoints=checkpoints, finalize_tolerance=finalize_tolerance,
                         say=say)
    computes_in, warning = describe_precision(plan, device)
    say(f"computing in {computes_in} on {device}")
    if warning:
        say(f"warning: {warning}")
    metrics.write("precision", device=str(device), computes_in=computes_in, reason=plan.precision.reason)
    if needs_source(plan, first):  # held by the context alone, so releasing it there frees it
        dtype = source_dtype(plan, device)
        sharded = trains_source_sharded(plan, first) and context.sharding
        say(f"loading {plan.source.model} from {verified.model_dir} on {device} "
            f"({str(dtype).removeprefix('torch.')}{', sharded over the processes' if sharded else ''})")
        context.model = (context.sharded_source(dtype, training=True) if sharded
                         else load_source_weights(verified, device, dtype))
        metrics.write("held", model="source", **distributed.held(context.model))
    if resume is not None:
        restore(context, resume)
        say(f"resuming from {resume.path.name} ({resume.meta['stage']}, step {resume.step}"
                      f"{', complete' if resume.complete else ''})")
        metrics.write("resume", checkpoint=resume.path.name, stage=resume.meta["stage"], step=resume.step)
    try:
        with stop_on_signals():
            for index, stage_plan in enumerate(plan.stages):
                if index < first:
                    continue
                name = stage_plan.stage
                context.stage_index = index
                context.resume = resume if resume is not None and index == resume.stage_index else None
                started = time.perf_counter()
                say(f"stage {name} ...")
                release_freed()
                at_start = resident_bytes()
                reset_peaks(device)
                stage = STAGES.get(name)(stage_plan)
                context.compiled = None
                stage.setup(context)
                stage.run(context)
                stage.finalize(context)
                seconds = time.perf_counter() - started
                found = peaks(device)
                metrics.write("stage", stage=name, seconds=round(seconds, 3), resident_bytes_at_start=at_start,
                              **found, **per_process("peak_rss_bytes", found.get("peak_rss_bytes")),
                              **per_process("resident_bytes_at_start", at_start))
                compiled = context.compiled
                say(f"stage {name} done in {seconds:.1f} s" + (
                    f" (compiling {compiled.compile_seconds:.1f} s: {compiled.graphs} graph(s), "
                    f"{compiled.graph_breaks} graph break(s))" if compiled else ""))
        distributed.barrier()
    finally:  # an interrupted run keeps its TensorBoard scalars too
        metrics.close()
    if distributed.is_main():
        write_text_atomic(run_dir / "done.json", pretty_json({"plan_sha256": plan.plan_sha256}))
    say(f"dense model in {run_dir / 'model'}")
    return run_dir
