"""Pruning methods x data mixers on the embedded model at one token budget, against two baselines.

    .venv/bin/pip install -e ".[bench]"    # torch-pruning, for the outside baseline
    .venv/bin/python bench/bench_methods.py --out runs/bench-methods [--seeds 0 1 2] [--budget 0.5] [--only NAME ...]

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

Every result is measured by the evaluate stage's code (same eval sequences). `--seeds` repeats every
cell with runtime.seed set (data order, mask noise, calibration windows); `--budget` scales every
cell's steps by the same factor. Writes OUT/results.json, OUT/plots/ (DRPruning's reference losses,
reference ratio and weights over each DRPruning run) and prints the markdown tables
docs/BENCHMARKS.md carries: per-domain losses of the first seed, and mean, worst-domain loss and
worst rise over the seeds (mean and standard deviation).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from baselines import compiled_plan, mha_copy, train_at_shape  # noqa: E402 (bench/ is not a package)

BASE_SPEC = REPO / "specs" / "tiny_drpruning.yaml"
MIXERS = {"constant": {"method": "constant"},
          "dynamic-batch-loading": {"method": "dynamic-batch-loading", "reference": "source"},
          "drpruning": {"method": "drpruning", "reference": "source"}}
# The schedule the recorded results used (the default's before it was cut to keep the README's first command
# under 5 minutes): 280 steps of 16 x 256 tokens in all, times --budget.
SCHEDULE = {"prune": {"steps": 120, "warmup_steps": 12, "eval_interval": 10},
            "recovery": {"steps": 160, "warmup_steps": 16, "eval_interval": 13}}
GRANULARITIES = ["head", "intermediate", "hidden"]  # the target keeps every layer
# Selection alone, as when the figures in docs/BENCHMARKS.md were measured (reconstruction was not yet the default)
ONE_SHOT = {"taylor": {"method": "taylor", "granularities": GRANULARITIES, "calibration_samples": 32,
                       "calibration_seq_len": 128, "reconstruct": None},
            "magnitude": {"method": "magnitude", "granularities": GRANULARITIES, "reconstruct": None}}


def base_spec() -> dict:
    spec = yaml.safe_load(BASE_SPEC.read_text())
    spec["eval"] = {"sequences_per_domain": 32}  # the default reads 16 to stay fast; gaps here are 0.01 nats
    for section, schedule in SCHEDULE.items():
        spec[section].update(schedule)
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


def scaled(spec: dict, budget: float) -> dict:
    """Every training stage's steps, warm-up and eval interval times `budget`: as many evals (and so as many
    DRPruning fits) on fewer tokens."""
    spec = {**spec}
    for section in ("prune", "recovery"):
        stage = spec[section]
        spec[section] = {**stage, **{key: max(1, round(stage[key] * budget))
                                     for key in ("steps", "warmup_steps", "eval_interval")}}
    return spec


def run_spec(spec: dict, work: Path) -> dict:
    """Compile and run in a fresh process (its own threads and memory); the run's report and wall time."""
    plan = compiled_plan({**spec, "runtime": {**spec.get("runtime", {}), "output_dir": "run"}}, work)
    subprocess.run([str(Path(sys.executable).parent / "shearc"), "run", str(work / "plan.json")], check=True,
                   stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(r["seconds"] for r in records if r["event"] == "stage")
    report = json.loads((work / "run" / "report.json").read_text())
    from shearc.report.compare import stage_tokens

    return {"report": report, "seconds": seconds, "run_dir": str(work / "run"), "train_tokens": stage_tokens(plan)}


def arguments(description: str, out: str, budget: str, smoke: str) -> argparse.Namespace:
    """The comparison benches' options: where results go, which cells, seeds, token budget, a smoke run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / out)
    parser.add_argument("--only", nargs="*", help="run only these variants (names as in the table)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="runtime.seed of each repeat")
    parser.add_argument("--budget", type=float, default=1.0, help=budget)
    parser.add_argument("--smoke", action="store_true", help=smoke)
    args = parser.parse_args()
    args.out = args.out.resolve()  # specs written under it name their sources by absolute path
    return args


def previous_results(args: argparse.Namespace) -> tuple[Path, dict, set[str] | None]:
    """The embedded corpus written if it is not there yet; OUT/results.json and what it already holds (cells
    done are not run again); the cells asked for (--only), or None for all."""
    if not (REPO / "specs" / "tiny" / "data" / "corpus.json").is_file():
        subprocess.run([str(Path(sys.executable).parent / "shearc"), "corpus", str(REPO / "specs/tiny/data")],
                       check=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    return results_path, results, set(args.only) if args.only else None


def main() -> None:
    args = arguments(__doc__.splitlines()[0], "bench-methods", "every cell's steps times this",
                     "4 steps per stage: check the script, not the methods")

    spec = scaled(base_spec(), args.budget)
    if args.smoke:
        for section in ("prune", "recovery"):
            spec[section].update(steps=4, eval_interval=2, warmup_steps=1)
    results_path, results, wanted = previous_results(args)

    def record(name: str, seed: int, make) -> None:
        if str(seed) in results.get(name, {}) or (wanted is not None and name not in wanted):
            return
        print(f"== {name}, seed {seed}", flush=True)
        results.setdefault(name, {})[str(seed)] = make()
        args.out.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))

    mha_dir = args.out / "mha-source"
    if not mha_dir.is_dir():
        mha_copy(Path(spec["source"]["model"]), mha_dir)
    one_shot_budget = {"recovery": {**spec["recovery"], "steps": total_steps(spec)}}  # all tokens in recovery
    for seed in args.seeds:
        seeded, out = {**spec, "runtime": {"seed": seed}}, args.out / f"seed{seed}"
        mha_spec = {**seeded, "source": {"model": str(mha_dir)},
                    "target": {"hidden": 192, "heads": 4, "intermediate": 384}, "prune": ONE_SHOT["taylor"],
                    "mixer": MIXERS["constant"], **one_shot_budget}
        cells = {name: (run_spec, variant, out / slug(name)) for name, variant in shearc_variants(seeded).items()}
        cells["random-init + constant"] = (partial(train_at_shape, kind="random"), {**seeded, **one_shot_budget},
                                           out / "random-init")
        cells["MHA: taylor + constant"] = (run_spec, mha_spec, out / "mha-taylor")
        cells["MHA: torch-pruning taylor + constant"] = (partial(train_at_shape, kind="torch-pruning"), mha_spec,
                                                         out / "mha-torch-pruning")
        for name, (runner, cell_spec, work) in cells.items():
            record(name, seed, partial(runner, cell_spec, work=work))
    plot_drpruning_runs(args.out / f"seed{args.seeds[0]}", args.out / "plots")
    print(seed_table(results, str(args.seeds[0]), BASELINE_LABELS))
    print()
    print(spread_table(results))


def slug(name: str) -> str:
    return name.replace(" + ", "-").replace(": ", "-").replace(" ", "-")


# What the baselines did instead of the spec's prune method (their run directories hold the spec's plan).
BASELINE_LABELS = {"random-init + constant": {"prune": "random init"},
                   "MHA: torch-pruning taylor + constant": {"prune": "torch-pruning taylor"}}


def seed_table(results: dict, seed: str, overrides: dict[str, dict] | None = None,
               run_dir_of=lambda name, result: Path(result["run_dir"])) -> str:
    """One seed's cells as `shearc compare` writes them (the source first, each cell's per-domain loss, the best
    of each column in bold), read from the cells' run directories; training tokens and wall time as the bench
    measured them."""
    from shearc.report.compare import columns_of, markdown, row_of, source_row
    from shearc.report.records import read_run

    names = [name for name, runs in results.items() if seed in runs]
    records = [read_run(run_dir_of(name, results[name][seed])) for name in names]
    rows = [source_row(records)] + [
        {**row_of(record, name), "training tokens": results[name][seed]["train_tokens"],
         "wall time (s)": results[name][seed]["seconds"], **(overrides or {}).get(name, {})}
        for name, record in zip(names, records, strict=True)]
    return markdown(rows, columns_of(rows, records))


def spread_table(results: dict) -> str:
    """Mean loss, worst-domain loss and worst rise over the source, as mean +- standard deviation over seeds;
    wall time as the median (a busy machine inflates single runs)."""
    lines = ["| variant | seeds | mean loss | worst-domain loss | worst rise | median wall time (s) |",
             "|---|---|---|---|---|---|"]
    for name, runs in results.items():
        rows = []
        for result in runs.values():
            losses = np.array([d["loss"] for d in result["report"]["result"]["domains"]])
            source = np.array([d["loss"] for d in result["report"]["source"]["domains"]])
            rows.append([losses.mean(), losses.max(), (losses - source).max(), result["seconds"]])
        rows = np.array(rows)
        cells = [_mean_sd(rows[:, column], 3, sign) for column, sign in ((0, ""), (1, ""), (2, "+"))]
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + f" | {np.median(rows[:, 3]):.0f} |")
    return "\n".join(lines)


def _mean_sd(values: np.ndarray, digits: int, sign: str) -> str:
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():{sign}.{digits}f} ± {spread:.{digits}f}"


def plot_drpruning_runs(seed_dir: Path, out: Path) -> None:
    """The report's DRPruning plots (reference losses and ratio; domain weights) for each DRPruning cell."""
    from shearc.report.plots import domain_weights, drpruning_references
    from shearc.report.records import read_run

    for run_dir in sorted(seed_dir.glob("*-drpruning/run")):
        record = read_run(run_dir)
        name = run_dir.parent.name
        for plot in (drpruning_references(record, out / name), domain_weights(record, out / name)):
            if plot is not None:
                print(f"plot: {plot}")


if __name__ == "__main__":
    main()
