"""Pruning methods x data mixers on the embedded model at one token budget, against two baselines.

    .venv/bin/pip install -e ".[bench]"    # torch-pruning, for the outside baseline
    .venv/bin/python bench/bench_methods.py --out runs/bench-methods [--only NAME ...]

Every variant starts from specs/tiny/model (3.2M parameters), reaches the target shape of
specs/tiny_drpruning.yaml (about half) and trains on the same number of tokens: hard-concrete
spends the spec's prune steps learning masks and then recovers for its recovery steps; Taylor and
magnitude prune in one shot on calibration windows (a few thousand tokens, not counted) and recover
for both together. Recovery is full fine-tuning everywhere, so the pruning method and the mixer are
the only differences. Mixers referenced to the source use its per-domain eval loss.

Baselines at the same token budget and schedule:
- random-init: the target shape from random initialisation (transformers' own init), trained with
  the constant mixture (Sheared-LLaMA's claim: pruning beats this);
- torch-pruning: torch-pruning's Taylor pruner on an exact multi-head copy of the source (its key
  and value heads repeated per query head; torch-pruning does not prune GQA key/value heads), to
  hidden 192, 4 heads, intermediate 384, next to shearc's Taylor on the same multi-head copy.

Every result is measured by the evaluate stage's code (same eval sequences). Writes
OUT/results.json and prints the markdown table docs/BENCHMARKS.md carries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from baselines import compiled_plan, mha_copy, train_at_shape  # noqa: E402 (bench/ is not a package)

BASE_SPEC = REPO / "specs" / "tiny_drpruning.yaml"
MIXERS = {"constant": {"method": "constant"},
          "dynamic-batch-loading": {"method": "dynamic-batch-loading", "reference": "source"},
          "drpruning": {"method": "drpruning", "reference": "source"}}
GRANULARITIES = ["head", "intermediate", "hidden"]  # the target keeps every layer
ONE_SHOT = {"taylor": {"method": "taylor", "granularities": GRANULARITIES, "calibration_samples": 32,
                       "calibration_seq_len": 128},
            "magnitude": {"method": "magnitude", "granularities": GRANULARITIES}}


def base_spec() -> dict:
    spec = yaml.safe_load(BASE_SPEC.read_text())
    spec["source"]["model"] = str(REPO / "specs" / spec["source"]["model"])
    for domain in spec["data"]["domains"]:
        for split in ("train", "eval"):
            domain[split] = [str(REPO / "specs" / path) for path in domain[split]]
    return spec


def total_steps(spec: dict) -> int:
    return spec["prune"]["steps"] + spec["recovery"]["steps"]


def shearc_variants(spec: dict) -> dict[str, dict]:
    variants = {}
    for mixer_name, mixer in MIXERS.items():
        variants[f"hard-concrete + {mixer_name}"] = {**spec, "mixer": mixer}
        for prune_name, prune in ONE_SHOT.items():
            variants[f"{prune_name} + {mixer_name}"] = {
                **spec, "prune": prune, "mixer": mixer, "recovery": {**spec["recovery"], "steps": total_steps(spec)}}
    return variants


def run_spec(spec: dict, work: Path) -> dict:
    """Compile and run in a fresh process (its own threads and memory); the run's report and wall time."""
    plan = compiled_plan({**spec, "runtime": {"output_dir": "run"}}, work)
    subprocess.run([str(Path(sys.executable).parent / "shearc"), "run", str(work / "plan.json")], check=True,
                   stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(r["seconds"] for r in records if r["event"] == "stage")
    report = json.loads((work / "run" / "report.json").read_text())
    trained = [s["params"] for s in plan["stages"] if "steps" in s.get("params", {})]
    return {"report": report, "seconds": seconds,
            "train_tokens": sum(p["steps"] * p["global_batch"] * p["seq_len"] for p in trained)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-methods")
    parser.add_argument("--only", nargs="*", help="run only these variants (names as in the table)")
    parser.add_argument("--smoke", action="store_true", help="4 steps per stage: check the script, not the methods")
    args = parser.parse_args()
    args.out = args.out.resolve()  # specs written under it name their sources by absolute path

    spec = base_spec()
    if args.smoke:
        for section in ("prune", "recovery"):
            spec[section].update(steps=4, eval_interval=2, warmup_steps=1)
    if not (REPO / "specs" / "tiny" / "data" / "corpus.json").is_file():
        subprocess.run([str(Path(sys.executable).parent / "shearc"), "corpus", str(REPO / "specs/tiny/data")],
                       check=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    wanted = set(args.only) if args.only else None

    def record(name: str, make) -> None:
        if name in results or (wanted is not None and name not in wanted):
            return
        print(f"== {name}", flush=True)
        results[name] = make()
        args.out.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))

    for name, variant in shearc_variants(spec).items():
        record(name, lambda name=name, variant=variant: run_spec(variant, args.out / slug(name)))
    one_shot_budget = {"recovery": {**spec["recovery"], "steps": total_steps(spec)}}  # all tokens in recovery
    record("random-init + constant",
           lambda: train_at_shape({**spec, **one_shot_budget}, "random", args.out / "random-init"))
    mha_dir = args.out / "mha-source"
    if not mha_dir.is_dir():
        mha_copy(Path(spec["source"]["model"]), mha_dir)
    mha_spec = {**spec, "source": {"model": str(mha_dir)}, "target": {"hidden": 192, "heads": 4, "intermediate": 384},
                "prune": ONE_SHOT["taylor"], "mixer": MIXERS["constant"], **one_shot_budget}
    record("MHA: taylor + constant", lambda: run_spec(mha_spec, args.out / "mha-taylor"))
    record("MHA: torch-pruning taylor + constant",
           lambda: train_at_shape(mha_spec, "torch-pruning", args.out / "mha-torch-pruning"))
    print(table(results))


def slug(name: str) -> str:
    return name.replace(" + ", "-").replace(": ", "-").replace(" ", "-")


def table(results: dict) -> str:
    names = next(iter(results.values()))["report"]["domains"]
    lines = ["| variant | params | training tokens | " + " | ".join(names) + " | mean | worst | worst rise | "
             "wall time (s) |", "|---|---|---|" + "---|" * len(names) + "---|---|---|---|"]
    source = next(iter(results.values()))["report"]["source"]
    source_losses = [d["loss"] for d in source["domains"]]
    lines.append(f"| source model | {source['params']:,} | | " + " | ".join(f"{v:.3f}" for v in source_losses)
                 + f" | {sum(source_losses) / len(source_losses):.3f} | {max(source_losses):.3f} | | |")
    for name, result in results.items():
        losses = [d["loss"] for d in result["report"]["result"]["domains"]]
        lines.append(f"| {name} | {result['report']['result']['params']:,} | {result['train_tokens']:,} | "
                     + " | ".join(f"{v:.3f}" for v in losses)
                     + f" | {sum(losses) / len(losses):.3f} | {max(losses):.3f} | "
                 + f"{max(a - b for a, b in zip(losses, source_losses, strict=True)):+.3f} | {result['seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
