"""Hard-concrete stages: the compile-time reach estimate (compiler/mask_reach.py) against what runs reach.

    .venv/bin/python bench/bench_mask_reach.py --model embedded|smollm2|gemma3 --steps 12 24 96

Each length is a fresh run (recovery and evaluation off) in a temporary directory: the embedded model with the
default's pruning (specs/tiny_drpruning.yaml; lr warm-up a tenth of the steps) on `shearc corpus`'s data;
SmolLM2-135M at the real-model tier's target (heads 9 -> 6 over KV heads 3 -> 2, intermediate 1536 -> 768) and
Gemma 3 270M at hidden 640 -> 512, intermediate 2048 -> 1024, on the tier's text, 2 x 128 tokens a step, lr
warm-up 1 step. Printed per run, a row of docs/BENCHMARKS.md's table: the step at which each kind's expected kept
fraction first reached its target, in the estimate and in the run ("never" with where it ended), the run's expected
size at the end against the target's, whether compile warned, and any steps whose update was not applied.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def spec_for(model: str, steps: int, work: Path) -> dict:
    if model == "embedded":
        from shearc.cli import main

        assert main(["corpus", str(work / "data")]) == 0
        spec = yaml.safe_load((REPO / "specs" / "tiny_drpruning.yaml").read_text())
        spec["source"]["model"] = str(REPO / "specs" / "tiny" / "model")
        for domain in spec["data"]["domains"]:
            domain["train"] = [str(work / "data" / domain["name"] / "train.jsonl")]
            domain["eval"] = [str(work / "data" / domain["name"] / "eval.jsonl")]
        spec["prune"].update(steps=steps, warmup_steps=max(1, steps // 10), eval_interval=max(1, steps // 12))
        spec.update(recovery={"method": "none"}, eval={"enabled": False})
        return spec
    from tests.real.assets import GEMMA3, real_model, write_text_domains
    from tests.real.test_real_model import real_spec

    text = write_text_domains(work / "text")
    units, target = ((["head", "intermediate"], {"heads": 6, "kv_heads": 2, "intermediate": 768}) if model == "smollm2"
                     else (["hidden", "intermediate"], {"hidden": 512, "intermediate": 1024}))
    prune = {"method": "hard-concrete", "granularities": units, "steps": steps, "global_batch": 2, "seq_len": 128,
             "warmup_steps": 1, "eval_interval": max(1, steps // 4)}
    return real_spec(real_model() if model == "smollm2" else real_model(GEMMA3), text, prune, {"method": "none"},
                     target=target, evaluation={"enabled": False})


def row(model: str, steps: int) -> str:
    from shearc.cli import main
    from shearc.compiler.families import Shape
    from shearc.compiler.mask_reach import estimate
    from shearc.runtime.metrics import MetricsLog
    from shearc.sections import HardConcretePruneSpec, ScheduleSpec

    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        spec = {**spec_for(model, steps, work), "name": "reach"}
        (work / "spec.yaml").write_text(yaml.safe_dump(spec))
        assert main(["compile", str(work / "spec.yaml"), "-o", str(work / "plan.json")]) == 0
        assert main(["run", str(work / "plan.json")]) == 0
        plan = json.loads((work / "plan.json").read_text())
        log = MetricsLog(work / "runs" / "reach" / "metrics.jsonl")
        trained, dropped = log.read("train"), [e["step"] for e in log.read("diverged") + log.read("nonfinite")]
    (prune,) = [s for s in plan["stages"] if s["stage"] == "prune"]
    params, schedule = HardConcretePruneSpec.model_validate(prune["params"]), ScheduleSpec(**plan["schedule"])
    shapes = [Shape(**plan[part]["model_info"]["shape"]) for part in ("source", "target")]
    reach = estimate(params, schedule, *shapes, [unit["kind"] for unit in plan["target"]["pruned_units"]])
    estimated = ", ".join(f"{kind} {r.reached_at or f'never ({r.lowest:.2f})'}" for kind, r in reach.kinds.items())
    ran = []
    for kind, r in reach.kinds.items():
        first = next((t["step"] for t in trained if t["expected_fraction"][kind] <= r.target), None)
        ran.append(f"{kind} {first or 'never ({:.2f})'.format(trained[-1]['expected_fraction'][kind])}")
    end, target = trained[-1]["expected_params"], plan["target"]["model_info"]["params"]
    warned = any("hard-concrete steps cannot" in warning for warning in plan["warnings"])
    return (f"| {model} | {steps} | {estimated} | {', '.join(ran)} | {end / 1e6:.2f}M / {target / 1e6:.2f}M "
            f"({end / target - 1:+.1%}) | {'yes' if warned else 'no'} |"
            + (f" steps not applied: {dropped}" if dropped else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["embedded", "smollm2", "gemma3"], default="embedded")
    parser.add_argument("--steps", type=int, nargs="+", default=[12, 24, 96])
    args = parser.parse_args()
    rows = [row(args.model, steps) for steps in args.steps]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
