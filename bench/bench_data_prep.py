"""Preparation's tokens/s on every core against the same process pinned to one core.

    .venv/bin/python bench/bench_data_prep.py [--model smollm2|gemma3] [--turns 3] [--copies 4]

The real tier's text (tests/real/assets.py: prose, code, legal), written `--copies` times as separate files, is
prepared from a fresh cache by shearc's own preparation (runtime/data/prepare.py: read with pyarrow, encoded a
batch at a time by the fast tokenizer, which runs its own threads on every core it may use, and written to the
cache) in a fresh process per measurement, the two ways taking turns: all cores, and `os.sched_setaffinity` to
core 0 before the tokenizer starts its threads. Printed: each way's tokens/s (median of turns) and the median of
the per-turn ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(model: str, text_dir: str, one_core: bool) -> None:
    """One measurement, in this (fresh) process: prints {"tokens": ..., "seconds": ...}."""
    if one_core:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    from transformers import AutoTokenizer

    from shearc.runtime.data import Preparer
    from tests.real.assets import GEMMA3, SMOLLM2, real_model

    tokenizer = AutoTokenizer.from_pretrained(real_model(GEMMA3 if model == "gemma3" else SMOLLM2))
    with tempfile.TemporaryDirectory() as cache:
        preparer = Preparer(tokenizer, "text", Path(cache))
        preparer.prepare(sorted(Path(text_dir).glob("*.jsonl")))
    print(json.dumps({"tokens": preparer.stats.tokens, "seconds": preparer.stats.seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["smollm2", "gemma3"], default="smollm2")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--measure", choices=["all", "one"], help=argparse.SUPPRESS)
    parser.add_argument("--text", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.model, args.text, args.measure == "one")
        return
    from tests.real.assets import write_text_domains

    with tempfile.TemporaryDirectory() as scratch:
        text = Path(scratch) / "text"
        for copy in range(args.copies):
            for name, path in write_text_domains(Path(scratch) / f"copy{copy}").items():
                text.mkdir(exist_ok=True)
                path.rename(text / f"{name}-{copy}.jsonl")
        rates: dict[str, list[float]] = {"all": [], "one": []}
        for _ in range(args.turns):
            for way in rates:
                out = subprocess.run([sys.executable, __file__, "--model", args.model, "--measure", way,
                                      "--text", str(text)], check=True, capture_output=True, text=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                rates[way].append(result["tokens"] / result["seconds"])
                print(f"{way}: {result['tokens']:,} tokens in {result['seconds']:.2f} s", file=sys.stderr)
    ratios = [a / o for a, o in zip(rates["all"], rates["one"], strict=True)]
    print(f"| {args.model}, {os.cpu_count()} cores | {statistics.median(rates['all']):,.0f} | "
          f"{statistics.median(rates['one']):,.0f} | {statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
