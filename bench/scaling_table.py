"""Per-device and per-process host memory of every seed recipe on 8 x 80 GB under FSDP2, and of a 70B recipe on 1 to 4
nodes.

    .venv/bin/python bench/scaling_table.py

Compiles each specs/*.yaml with a real source (the tiny ones are skipped) with runtime set to 8
processes, FSDP2 and 80 GiB per device (everything else as the spec says), then the 70B bench spec
at 8, 16 and 32 processes (micro-batches of 4, 2 and 1, so the default global batch of
32 still splits), and prints the markdown tables docs/SCALING.md carries: the plan's
peak memory per device for each stage, and whether it fits; then the host memory of each stage's busiest
process, its largest stage, and a node's 8 processes together at that peak (each counted as the busiest: an
upper bound). No GPU is involved: these are the compiler's estimates.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("prune", "finalize", "recover", "evaluate", "export")
GIB = 2**30
PROCESSES_PER_NODE = 8


def recipes() -> list[tuple[Path, int]]:
    seeds = [(p, 8) for p in sorted((REPO / "specs").glob("*.yaml")) if not p.name.startswith("tiny")]
    return seeds + [(REPO / "bench" / "compile_70b.yaml", devices) for devices in (8, 16, 32)]


def compiled(spec_path: Path, work: Path, devices: int = 8):
    from shearc.compiler.compile import compile_spec

    spec = yaml.safe_load(spec_path.read_text())
    spec["runtime"] = {**spec.get("runtime", {}), "devices": devices, "strategy": "fsdp2", "device_memory_gib": 80}
    schedule = spec.setdefault("schedule", {})
    if devices > 8:
        schedule["micro_batch"] = 32 // devices
    for section in ("prune", "recovery"):  # global batches must split over 8 processes' micro-batches
        stage = spec.get(section, {})
        if "global_batch" in stage and stage["global_batch"] % (devices * schedule.get("micro_batch", 4)):
            raise SystemExit(f"{spec_path.name}: {section}.global_batch does not split over {devices} processes")
    written = spec_path.parent / f".scaling-{spec_path.name}"  # beside it: its relative paths still resolve
    written.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        return compile_spec(written, work / "plan.json")
    finally:
        written.unlink()


def device_row(spec_path: Path, plan, devices: int) -> str:
    memory = {stage.stage: stage.estimate.memory_bytes.total / GIB for stage in plan.stages}
    fits = all(value <= 80 for value in memory.values())
    params = plan.source.model_info.params, plan.target.model_info.params
    return (f"| `{spec_path.relative_to(REPO)}` | {devices} | {params[0] / 1e9:.2f}B -> {params[1] / 1e9:.2f}B | "
            + " | ".join(f"{memory[s]:.1f}" if s in memory else "" for s in STAGES) + f" | {'yes' if fits else 'NO'} |")


def host_row(spec_path: Path, plan, devices: int) -> str:
    host = {stage.stage: stage.estimate.host_memory_bytes / GIB for stage in plan.stages}
    largest = max(host, key=host.get)
    return (f"| `{spec_path.relative_to(REPO)}` | {devices} | "
            + " | ".join(f"{host[s]:.1f}" if s in host else "" for s in STAGES)
            + f" | {largest} | {PROCESSES_PER_NODE * host[largest]:.1f} |")


def main() -> None:
    work = Path(tempfile.mkdtemp())
    try:
        plans = [(path, devices, compiled(path, work, devices)) for path, devices in recipes()]
    finally:
        shutil.rmtree(work)
    print("| recipe | devices | parameters | " + " | ".join(STAGES) + " | fits 80 GiB |")
    print("|---|---|---|" + "---|" * len(STAGES) + "---|")
    for path, devices, plan in plans:
        print(device_row(path, plan, devices))
    print()
    print("| recipe | devices | " + " | ".join(STAGES) + f" | largest | node ({PROCESSES_PER_NODE} processes) |")
    print("|---|---|" + "---|" * len(STAGES) + "---|---|")
    for path, devices, plan in plans:
        print(host_row(path, plan, devices))


if __name__ == "__main__":
    main()
