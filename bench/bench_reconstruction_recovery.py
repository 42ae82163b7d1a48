"""Whether reconstruction's head start survives recovery: the same prune, with and without it, then an equal budget.

    .venv/bin/python bench/bench_reconstruction_recovery.py --out runs/bench-reconstruction-recovery
    .venv/bin/shearc compare runs/bench-reconstruction-recovery/*/runs/real --markdown table.md --out plots/

On the real tier's SmolLM2 checkpoint, Taylor at about 80% of the parameters (bench_reconstruction.py's shape), for
each recovery method (`--recoveries`: full, lora, distill) with and without `prune.reconstruct`, the same number of
recovery steps, batch and tokens: every cell is a plain `shearc run` of its own compiled plan, so `shearc compare`
reads the runs back (per-domain loss, and training loss against recovery tokens as a plot). Printed: per cell the
mean per-domain loss after recovery (the evaluate stage's report) and the stages' seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_reconstruction import METHODS, SIZES  # noqa: E402 - after the path is set


def main() -> None:
    from shearc.cli import main as shearc
    from shearc.runtime.metrics import MetricsLog
    from tests.helpers import write_spec
    from tests.real.assets import SMOLLM2, real_model, write_text_domains
    from tests.real.test_real_model import real_spec

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recoveries", nargs="+", default=["full", "lora", "distill"])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--samples", type=int, default=64, help="reconstruction windows")
    parser.add_argument("--seq-len", type=int, default=256, help="reconstruction window length")
    args = parser.parse_args()
    model_dir = real_model(SMOLLM2)
    text = write_text_domains(args.out / "text")
    recovery = {"steps": args.steps, "global_batch": 4, "seq_len": 128, "warmup_steps": 2,
                "eval_interval": max(1, args.steps // 4)}
    learning_rates = {"full": 2e-5, "lora": 1e-4, "distill": 2e-5}  # distill trains every student weight, as full
    rows = []
    for method in args.recoveries:
        for refit in (False, True):
            prune = {**METHODS["taylor"], "reconstruct": None}
            if refit:
                prune["reconstruct"] = {"method": "least-squares", "calibration_samples": args.samples,
                                        "calibration_seq_len": args.seq_len}
            cell = args.out / f"{method}-{'reconstructed' if refit else 'selected'}"
            spec = real_spec(model_dir, text, prune, {"method": method, "lr": learning_rates[method], **recovery},
                             target=SIZES["smollm2"]["80%"], evaluation={"sequences_per_domain": 8, "seq_len": 128})
            cell.mkdir(parents=True, exist_ok=True)
            plan = cell / "plan.json"
            assert shearc(["compile", str(write_spec(cell, spec)), "-o", str(plan)]) == 0
            assert shearc(["run", str(plan)]) == 0
            run_dir = cell / "runs" / "real"
            report = json.loads((run_dir / "report.json").read_text())
            result = dict(zip(report["domains"], (d["loss"] for d in report["result"]["domains"]), strict=True))
            source = dict(zip(report["domains"], (d["loss"] for d in report["source"]["domains"]), strict=True))
            seconds = {s["stage"]: s["seconds"] for s in MetricsLog(run_dir / "metrics.jsonl").read("stage")}
            rows.append({"recovery": method, "reconstruct": refit, "result": result, "source": source,
                         "mean": statistics.fmean(result.values()), "source_mean": statistics.fmean(source.values()),
                         "seconds": seconds})
            print(json.dumps(rows[-1]), flush=True)
    print("\nrecovery  reconstruct  mean loss after  (source)   prune s  recover s")
    for row in rows:
        print(f"{row['recovery']:9} {'yes' if row['reconstruct'] else 'no':11}  {row['mean']:15.3f}  "
              f"({row['source_mean']:.3f})  {row['seconds']['prune']:7.1f}  {row['seconds'].get('recover', 0):9.1f}")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
