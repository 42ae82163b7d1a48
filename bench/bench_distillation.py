"""Minitron's recipe against the others on the embedded model: recovery by distillation against LM loss.

    .venv/bin/python bench/bench_distillation.py --out runs/bench-distillation [--seeds 0 1 2] [--budget 0.5]

Every cell starts from specs/tiny/model (3.2M parameters), prunes in one shot on the same 32
calibration windows of 128 tokens (not counted), and recovers on the same number of tokens with the
constant mixture of specs/tiny_drpruning.yaml, so only the pruning method and the recovery differ:

- width (the target of specs/tiny_drpruning.yaml: every layer, hidden 192, 4 query heads over 1 KV
  head, intermediate 448): taylor and activation, each recovered by LM loss and by distillation
  from the source (KL only, T = 1), each in full and through LoRA (rank 8, merged); magnitude in
  full by LM loss and by distillation;
- depth (2 of the 4 layers, the width kept): activation's block influence against Taylor's layer
  scores, each recovered in full by LM loss and by distillation.

Full training uses lr 1e-3 and LoRA 2e-3 (the tiny specs' rates), whatever the loss. Every result is
measured by the evaluate stage's code (32 sequences of 256 tokens per domain). `--seeds` repeats every
cell with runtime.seed set (data order, calibration windows, LoRA initialisation); `--budget` scales
the recovery steps. Writes OUT/results.json and prints the tables docs/BENCHMARKS.md carries: mean,
worst-domain loss and worst rise over the source (mean and standard deviation over the seeds), and
paired differences (same seed) for the comparisons the issue asks for; and, for the first seed, every
cell's per-domain loss as `shearc compare` writes it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from bench_methods import (  # noqa: E402 (bench/ is not a package)
    arguments,
    base_spec,
    previous_results,
    run_spec,
    seed_table,
    slug,
    spread_table,
)

WIDTH = ["head", "intermediate", "hidden"]
# Selection alone, as when the figures in docs/BENCHMARKS.md were measured (reconstruction was not yet the default)
CALIBRATION = {"calibration_samples": 32, "calibration_seq_len": 128, "reconstruct": None}
PRUNES = {"taylor": {"method": "taylor", **CALIBRATION}, "activation": {"method": "activation", **CALIBRATION},
          "magnitude": {"method": "magnitude", "reconstruct": None}}
STUDENTS = {"full": {"lr": 1e-3}, "LoRA": {"lr": 2e-3}}
DEPTH_TARGET = {"layers": 2}


def recovery(loss: str, student: str, common: dict) -> dict:
    """One recovery section: LM loss or distillation, full or LoRA, on the common schedule."""
    section = {**common, **STUDENTS[student]}
    if loss == "LM":
        return {**section, "method": "full" if student == "full" else "lora"}
    return {**section, "method": "distill", "student": "full" if student == "full" else "lora"}


def cells(spec: dict) -> dict[str, dict]:
    """Every variant's spec, named as in the tables."""
    common = {key: spec["recovery"][key] for key in ("steps", "global_batch", "seq_len", "warmup_steps")}
    common["eval_interval"] = common["steps"]  # the constant mixture reads no evals: only the final one counts
    base = {**spec, "mixer": {"method": "constant"}}
    variants = {}
    for prune_name in ("taylor", "activation", "magnitude"):
        for student in STUDENTS if prune_name != "magnitude" else ["full"]:
            for loss in ("LM", "distill"):
                variants[f"{prune_name} + {loss} ({student})"] = {
                    **base, "prune": {**PRUNES[prune_name], "granularities": WIDTH},
                    "recovery": recovery(loss, student, common)}
    for prune_name in ("taylor", "activation"):
        for loss in ("LM", "distill"):
            variants[f"depth: {prune_name} + {loss} (full)"] = {
                **base, "target": DEPTH_TARGET, "prune": {**PRUNES[prune_name], "granularities": ["layer"]},
                "recovery": recovery(loss, "full", common)}
    return variants


def paired(results: dict, first: str, second: str, column: str) -> str | None:
    """`second` minus `first` on the same seeds: mean +- sd, and whether the order holds (the same sign in
    every seed and the mean beyond twice its standard error)."""
    seeds = sorted(set(results.get(first, {})) & set(results.get(second, {})), key=int)
    if len(seeds) < 2:
        return None
    differences = np.array([_summary(results[second][s])[column] - _summary(results[first][s])[column]
                            for s in seeds])
    mean, sd = differences.mean(), differences.std(ddof=1)
    holds = (np.all(differences < 0) or np.all(differences > 0)) and abs(mean) > 2 * sd / np.sqrt(len(seeds))
    return f"{mean:+.3f} ± {sd:.3f} ({'holds' if holds else 'within the spread'})"


def _summary(result: dict) -> dict[str, float]:
    losses = np.array([d["loss"] for d in result["report"]["result"]["domains"]])
    source = np.array([d["loss"] for d in result["report"]["source"]["domains"]])
    return {"mean": float(losses.mean()), "worst": float(losses.max()), "rise": float((losses - source).max())}


COMPARISONS = [(f"{prune} + LM ({student})", f"{prune} + distill ({student})")
               for prune in ("taylor", "activation") for student in STUDENTS] + [
    ("magnitude + LM (full)", "magnitude + distill (full)"),
    ("taylor + LM (full)", "activation + LM (full)"),
    ("taylor + distill (full)", "activation + distill (full)"),
    ("magnitude + LM (full)", "activation + LM (full)"),
    ("depth: taylor + LM (full)", "depth: activation + LM (full)"),
    ("depth: taylor + distill (full)", "depth: activation + distill (full)"),
    ("depth: taylor + LM (full)", "depth: taylor + distill (full)"),
    ("depth: activation + LM (full)", "depth: activation + distill (full)")]


def paired_table(results: dict) -> str:
    lines = ["| second minus first (same seed) | mean loss | worst-domain loss | worst rise |", "|---|---|---|---|"]
    for first, second in COMPARISONS:
        columns = [paired(results, first, second, column) for column in ("mean", "worst", "rise")]
        if None not in columns:
            lines.append(f"| {second} − {first} | " + " | ".join(columns) + " |")
    return "\n".join(lines)


def cell_dir(out: Path, seed: int, name: str) -> Path:
    return out / f"seed{seed}" / slug(name).replace("(", "").replace(")", "")


def main() -> None:
    args = arguments(__doc__.splitlines()[0], "bench-distillation", "the recovery's steps and warm-up times this",
                     "4 recovery steps: check the script, not the methods")

    spec = base_spec()
    steps = 4 if args.smoke else round((spec["prune"]["steps"] + spec["recovery"]["steps"]) * args.budget)
    spec["recovery"] = {**spec["recovery"], "steps": steps, "warmup_steps": max(1, steps // 10)}
    results_path, results, wanted = previous_results(args)
    for seed in args.seeds:
        for name, variant in cells({**spec, "runtime": {"seed": seed}}).items():
            if str(seed) in results.get(name, {}) or (wanted is not None and name not in wanted):
                continue
            print(f"== {name}, seed {seed}", flush=True)
            results.setdefault(name, {})[str(seed)] = run_spec(variant, cell_dir(args.out, seed, name))
            args.out.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1))
    print(seed_table(results, str(args.seeds[0]), run_dir_of=lambda name, result: cell_dir(
        args.out, args.seeds[0], name) / "run"))
    print()
    print(spread_table(results))
    print()
    print(paired_table(results))


if __name__ == "__main__":
    main()
