"""Peak memory per stage against the plan's estimate, on the real model and on the embedded one.

    .venv/bin/python bench/bench_memory.py                  # real model (taylor, magnitude), embedded plans
    .venv/bin/python bench/bench_memory.py --only real      # the real model's plans alone
    .venv/bin/python bench/bench_memory.py --plans a.json   # any plans compiled for the CPU

Every plan runs twice, each time in a fresh process:
- as users run it (`shearc run`): each stage's resident-set peak, from metrics.jsonl, above the
  process's resident memory before any model was loaded (imports, tokenizer);
- with every stage under torch.profiler(profile_memory=True): the peak of live tensor bytes, torch's
  own accounting of what the plan's estimate models (on a GPU, torch.cuda.max_memory_allocated; the
  runtime records it itself there), starting from the tensors alive when the stage begins.
The real model is SmolLM2-135M (tests/real/assets.py); the embedded plans are specs/tiny_*.yaml with
their stages cut to a few steps (peaks do not grow with steps). Printed: one table per plan.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20
SHORT = {"steps": 8, "warmup_steps": 1, "eval_interval": 4}  # the embedded plans' training stages, cut


def real_plans(work: Path) -> list[Path]:
    sys.path.insert(0, str(REPO))
    from tests.real.assets import real_model, write_text_domains
    from tests.real.test_real_model import PRUNE, real_spec

    text = write_text_domains(work / "real-text")
    plans = []
    for method in ("taylor", "magnitude"):
        spec = real_spec(real_model(), text, PRUNE[method])
        spec.update(name=f"real-{method}", runtime={"device": "cpu"})
        spec["recovery"]["steps"] = 8
        plans.append(compile_spec(work, spec))
    return plans


def embedded_plans(work: Path) -> list[Path]:
    specs = work / "specs"
    if not specs.exists():
        subprocess.run(["cp", "-r", str(REPO / "specs"), str(specs)], check=True)
    if not (specs / "tiny" / "data").exists():
        subprocess.run([sys.executable, "-m", "shearc.cli", "corpus", str(specs / "tiny" / "data")], check=True,
                       capture_output=True)
    plans = []
    for name in ("tiny_sheared_llama", "tiny_llm_pruner", "tiny_drpruning"):
        spec = yaml.safe_load((REPO / "specs" / f"{name}.yaml").read_text())
        for section in ("prune", "recovery"):
            if "steps" in spec[section]:
                spec[section].update(SHORT)
        spec.setdefault("runtime", {})["device"] = "cpu"
        spec["source"]["model"] = str(specs / spec["source"]["model"])
        for domain in spec["data"]["domains"]:
            domain["train"] = [str(specs / p) for p in domain["train"]]
            domain["eval"] = [str(specs / p) for p in domain.get("eval", [])]
        plans.append(compile_spec(specs, spec))  # beside the copied specs: their relative task paths resolve
    return plans


def compile_spec(work: Path, spec: dict) -> Path:
    from shearc.compiler.compile import compile_spec as compile_
    from shearc.compiler.compile import write_plan

    spec_path = work / f"{spec['name']}.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    plan = work / f"{spec['name']}.json"
    write_plan(compile_(spec_path, plan), plan)
    return plan


def resident_peaks(plan: Path, out: Path) -> dict[str, float]:
    subprocess.run([sys.executable, "-m", "shearc.cli", "run", str(plan), "--out", str(out)], check=True,
                   capture_output=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    baseline = next(r["resident_bytes_before_models"] for r in records if r["event"] == "memory")
    return {r["stage"]: (r["peak_rss_bytes"] - baseline) / MIB for r in records if r["event"] == "stage"}


def tensor_peaks(plan: Path, out: Path) -> dict[str, float]:
    result = out.with_suffix(".tensors.json")
    subprocess.run([sys.executable, __file__, "--profile-run", str(plan), "--out", str(out), "--json", str(result)],
                   check=True, capture_output=True)
    return json.loads(result.read_text())


def profile_run(plan: Path, out: Path, result: Path) -> None:
    """Run the plan with every stage under the profiler; write stage -> peak live tensor MiB."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from shearc.cli import main
    from shearc.runtime.stages.base import STAGES

    peaks: dict[str, float] = {}

    def wrap(name: str, run):
        def profiled(self, context):
            gc.collect()
            start = live_tensor_bytes(torch)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                run(self, context)
            level = peak = 0
            for _, change in sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()
                                    if e.self_cpu_memory_usage):
                level += change
                peak = max(peak, level)
            peaks[name] = (start + peak) / MIB
        return profiled

    for name in STAGES.names():
        stage = STAGES.get(name)
        stage.run = wrap(name, stage.run)
    if main(["run", str(plan), "--out", str(out)]) != 0:
        raise SystemExit(f"{plan} failed")
    result.write_text(json.dumps(peaks))


def live_tensor_bytes(torch) -> int:
    seen, total = set(), 0
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and not obj.is_meta:
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


def report(plan_path: Path, work: Path) -> None:
    plan = json.loads(plan_path.read_text())
    started = time.perf_counter()
    rss = resident_peaks(plan_path, work / f"{plan_path.stem}-run")
    tensors = tensor_peaks(plan_path, work / f"{plan_path.stem}-profiled")
    import torch

    from shearc.plan.read import read_plan
    from shearc.runtime.precision import source_dtype

    held = source_dtype(read_plan(plan_path), torch.device("cpu"))  # the source's dtype as the run holds it
    params = plan["source"]["model_info"]["params"]
    size = params * held.itemsize / MIB
    dtype = str(held).removeprefix("torch.")
    print(f"\n{plan['spec']['name']}: source {params:,} parameters = {size:.0f} MiB in {dtype} as held; "
          f"{time.perf_counter() - started:.0f} s")
    print("| stage | estimate MiB | torch peak MiB | estimate / torch | resident peak MiB | resident / estimate "
          "| resident / source held |")
    print("|---|---|---|---|---|---|---|")
    for stage in plan["stages"]:
        name = stage["stage"]
        estimate = stage["estimate"]["memory_bytes"]["total"] / MIB
        print(f"| {name} | {estimate:.0f} | {tensors[name]:.0f} | {estimate / tensors[name]:.2f} | {rss[name]:.0f} "
              f"| {rss[name] / estimate:.2f} | {rss[name] / size:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plans", nargs="*", type=Path, help="plans to measure (default: real and embedded)")
    parser.add_argument("--only", choices=["real", "embedded"], help="of the default plans, these alone")
    parser.add_argument("--profile-run", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile_run:
        profile_run(args.profile_run, args.out, args.json)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plans = args.plans or [*(real_plans(work) if args.only != "embedded" else []),
                               *(embedded_plans(work) if args.only != "real" else [])]
        for plan in plans:
            report(plan, work)


if __name__ == "__main__":
    main()
