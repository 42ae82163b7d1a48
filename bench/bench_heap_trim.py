"""How much a forward of a model FSDP2 shards over 2 CPU processes grows the resident set, with and without glibc's
heap trimmed after each decoder block (memory.trimmed_after_each, what evaluate does on a CPU), and what it costs.

    .venv/bin/python bench/bench_heap_trim.py            # SmolLM2-135M (tests/real/assets.py), 2 x 128 tokens

Starts itself under torchrun on 2 processes (gloo). For each setting in turn, each process reads the real model
sharded from its files in bf16 (distributed.sharded_model, as evaluate reads each model) and runs FORWARDS forwards
under bf16 autocast: the rise of rank 0's resident high-water mark above its resident set once the model is read,
and the time of a forward; medians over --repeats turns (a first turn, not counted, warms up). Trimmed after
every block, every 2nd or every 4th, and untrimmed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20
FORWARDS = 8  # a turn's forwards, one after another, as evaluate runs a domain's batches


def worker(repeats: int) -> None:
    sys.path.insert(0, str(REPO))
    import torch

    from shearc.runtime import distributed
    from shearc.runtime.dense_shards import ShardedWeights
    from shearc.runtime.loss import sequence_losses
    from shearc.runtime.memory import peaks, release_freed, reset_peaks, resident_bytes, trimmed_after_each
    from shearc.runtime.models import meta_model
    from tests.real.assets import real_model

    distributed.initialize()
    directory = real_model()
    config = json.loads((directory / "config.json").read_text())
    weights = ShardedWeights(directory, {"lm_head.weight": "model.embed_tokens.weight"})
    cpu = torch.device("cpu")
    ids = torch.randint(0, config["vocab_size"], (2, 128), generator=torch.Generator().manual_seed(distributed.rank()))
    found: dict[str, dict[str, list[float]]] = {setting: {"rise": [], "seconds": []}
                                                for setting in ("untrimmed", "every 1", "every 2", "every 4")}
    for turn in range(repeats + 1):
        for setting in found:  # a model read afresh each time, as evaluate reads each of its two
            model = distributed.sharded_model(meta_model(config, torch.bfloat16), weights, "model.layers",
                                              torch.bfloat16, cpu)
            release_freed(collect=True)
            before = resident_bytes()
            reset_peaks(cpu)
            trimming = (nullcontext() if setting == "untrimmed"
                        else trimmed_after_each(model.model.layers, cpu, every=int(setting.split()[1])))
            started = time.perf_counter()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), trimming:
                for _ in range(FORWARDS):
                    sequence_losses(model, ids)
            if turn:  # the first turn warms up
                found[setting]["seconds"].append((time.perf_counter() - started) / FORWARDS)
                found[setting]["rise"].append((peaks(cpu)["peak_rss_bytes"] - before) / MIB)
            del model
    if distributed.is_main():
        for setting, values in found.items():
            print(f"{setting:10} rise {statistics.median(values['rise']):6.0f} MiB   "
                  f"forward {statistics.median(values['seconds']):.3f} s   (medians of {repeats})")
    distributed.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.repeats)
        return
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    __file__, "--worker", "--repeats", str(args.repeats)], check=True)


if __name__ == "__main__":
    main()
