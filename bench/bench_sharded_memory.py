"""Each process's resident peak per stage under FSDP2 on 2 processes (gloo, CPU), against one process's.

    .venv/bin/python bench/bench_sharded_memory.py                        # taylor and hard-concrete, no recovery
    .venv/bin/python bench/bench_sharded_memory.py --methods hard-concrete --repeats 2

The real model (SmolLM2-135M, tests/real/assets.py), its real text, the real tier's target; recovery none, so the
stages after pruning are finalize, evaluate and export. Each plan runs in one process (runtime.devices 1) and under
torchrun on two (devices 2, strategy fsdp2), one after the other; a stage's peak is its resident set's high-water
mark above the process's resident memory before any model was loaded (metrics.jsonl: every process's, under two).
Printed per stage: one process's peak, each of the two processes', and the larger of the two against one process's.
With --repeats N every figure is the median of N runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20
HARD_CONCRETE = {"method": "hard-concrete", "steps": 4, "global_batch": 4, "seq_len": 128, "warmup_steps": 1,
                 "eval_interval": 2}
STAGES = ("finalize", "evaluate", "export")


def plan_for(work: Path, method: str, processes: int) -> Path:
    sys.path.insert(0, str(REPO))
    from shearc.compiler.compile import compile_spec, write_plan
    from tests.real.assets import real_model, write_text_domains
    from tests.real.test_real_model import PRUNE, real_spec

    prune = HARD_CONCRETE if method == "hard-concrete" else PRUNE[method]
    spec = real_spec(real_model(), write_text_domains(work / "real-text"), prune, {"method": "none"})
    spec.update(name=f"sharded-{method}-{processes}",
                runtime={"device": "cpu", "devices": processes, "strategy": "fsdp2", "seed": 0})
    spec_path, plan = work / f"{spec['name']}.yaml", work / f"{spec['name']}.json"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    write_plan(compile_spec(spec_path, plan), plan)
    return plan


def peaks(plan: Path, out: Path, processes: int) -> dict[str, list[float]]:
    """Stage -> each process's resident peak above its own baseline, in MiB."""
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
              if processes > 1 else [sys.executable])
    subprocess.run([*launch, "-m", "shearc.cli", "run", str(plan), "--out", str(out)], check=True,
                   capture_output=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    memory = next(r for r in records if r["event"] == "memory")
    baselines = memory.get("resident_bytes_before_models_per_process", [memory["resident_bytes_before_models"]])
    return {r["stage"]: [(peak - base) / MIB for peak, base in
                         zip(r.get("peak_rss_bytes_per_process", [r["peak_rss_bytes"]]), baselines, strict=True)]
            for r in records if r["event"] == "stage"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["taylor", "hard-concrete"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for method in args.methods:
            runs: dict[int, list[dict[str, list[float]]]] = {1: [], 2: []}
            plans = {n: plan_for(work, method, n) for n in runs}
            for repeat in range(args.repeats):
                for n in runs:  # alternated, so drift on a shared machine falls on both
                    runs[n].append(peaks(plans[n], work / f"out-{method}-{n}-{repeat}", n))
            print(f"\n{method} (SmolLM2-135M, recovery none), resident peak above baseline, MiB, "
                  f"median of {args.repeats}")
            print(f"{'stage':10} {'1 process':>10} {'rank 0':>8} {'rank 1':>8} {'max / 1':>8}")
            for stage in runs[1][0]:
                one = statistics.median(run[stage][0] for run in runs[1])
                two = [statistics.median(run[stage][rank] for run in runs[2]) for rank in range(2)]
                mark = " *" if stage in STAGES else ""
                print(f"{stage:10} {one:10.0f} {two[0]:8.0f} {two[1]:8.0f} {max(two) / one:8.2f}{mark}")
            print("* a stage the sharded hand-off covers")


if __name__ == "__main__":
    main()
