"""How long does compiling a 70B-class spec take? Target: under 2 s.

    .venv/bin/python bench/bench_compile.py [--repeats 7]

Reports the median in-process compile (imports done, as in `shearc validate` of many specs or
any caller that keeps the process) and, separately, the cold command `shearc compile` including
interpreter start and importing torch and transformers.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEC = HERE / "compile_70b.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from shearc.compiler.compile import compile_spec  # transformers itself loads on the first compile

    with tempfile.TemporaryDirectory() as out:
        plan_path = Path(out) / "plan.json"
        started = time.perf_counter()
        compile_spec(SPEC, plan_path)
        first_s = time.perf_counter() - started
        warm = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            plan = compile_spec(SPEC, plan_path)
            warm.append(time.perf_counter() - started)
        cold = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "shearc.cli", "compile", str(SPEC), "-o", str(plan_path)],
                           check=True, capture_output=True)
            cold.append(time.perf_counter() - started)

    source, target = plan.source.model_info, plan.target.model_info
    print(f"source {source.params:,} params ({source.shape.layers} layers) -> target {target.params:,}")
    print("| measurement | median (s) | min (s) | runs |")
    print("|---|---|---|---|")
    print(f"| compile, in process (imports done) | {statistics.median(warm):.3f} | {min(warm):.3f} | {len(warm)} |")
    print(f"| first compile in process (imports torch and transformers) | {first_s:.3f} | | 1 |")
    print(f"| `shearc compile` command, cold | {statistics.median(cold):.3f} | {min(cold):.3f} | {len(cold)} |")


if __name__ == "__main__":
    main()
