"""What scoring costs: forward-only activation importance (Minitron) against Taylor's gradients, on the real model.

    .venv/bin/python bench/bench_importance_cost.py --repeats 3

On SmolLM2-135M (tests/real/assets.py) in fp32 on the CPU, each method scores the same calibration
windows (random token windows: the cost does not depend on the text) in the same micro-batches,
through the prune stage's own code (the importance method, then the exact-shape selection). Taken
in turns, in one process: seconds, and the peak resident memory above what the process held before
(VmHWM after clearing it), per method; medians over the repeats and the median of the per-turn
ratios activation / taylor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WINDOWS, SEQ_LEN, MICRO_BATCH = 16, 256, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from shearc.compiler.graph import build_graph
    from shearc.compiler.source import introspect, read_config
    from shearc.runtime.importance.methods import ActivationImportance, TaylorImportance
    from shearc.runtime.importance.selection import score_and_select
    from shearc.runtime.memory import peaks, release_freed, reset_peaks, resident_bytes
    from shearc.sections import ActivationPruneSpec, TaylorPruneSpec
    from tests.real.assets import real_model

    model_dir = real_model()
    source = introspect(read_config(model_dir / "config.json"), "local", model_dir / "config.json")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    graph = build_graph(source)
    shape = source.shape
    target = type(shape)(shape.layers, shape.hidden, shape.heads // 3 * 2, shape.kv_heads // 3 * 2,
                         shape.intermediate // 2, shape.head_dim)
    generator = torch.Generator().manual_seed(0)
    windows = [torch.randint(0, source.vocab, (SEQ_LEN,), generator=generator) for _ in range(WINDOWS)]
    methods = {
        "taylor": TaylorImportance(TaylorPruneSpec(method="taylor", calibration_samples=WINDOWS,
                                                   calibration_seq_len=SEQ_LEN)),
        "activation": ActivationImportance(ActivationPruneSpec(method="activation", calibration_samples=WINDOWS,
                                                               calibration_seq_len=SEQ_LEN)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    peak: dict[str, list[int]] = {name: [] for name in methods}
    device = torch.device("cpu")
    for repeat in range(args.repeats):
        order = list(methods) if repeat % 2 == 0 else list(reversed(methods))
        for name in order:
            release_freed(collect=True)
            before = resident_bytes()
            reset_peaks(device)
            started = time.perf_counter()
            score_and_select(model, source.adapter, graph, shape, target, methods[name], lambda: windows,
                             batch_size=MICRO_BATCH)
            seconds[name].append(time.perf_counter() - started)
            peak[name].append(peaks(device)["peak_rss_bytes"] - before)
            model.zero_grad(set_to_none=True)
    print(f"SmolLM2-135M fp32, {WINDOWS} windows x {SEQ_LEN} tokens, micro-batch {MICRO_BATCH}, "
          f"{args.repeats} turns, {torch.get_num_threads()} threads")
    for name in methods:
        print(f"{name:>10}: {statistics.median(seconds[name]):6.2f} s   peak above baseline "
              f"{statistics.median(peak[name]) / 2**20:7.0f} MiB")
    time_ratio = statistics.median(a / t for a, t in zip(seconds["activation"], seconds["taylor"], strict=True))
    memory_ratio = statistics.median(a / t for a, t in zip(peak["activation"], peak["taylor"], strict=True))
    print(f"activation / taylor: time {time_ratio:.3f}, peak memory {memory_ratio:.3f}")


if __name__ == "__main__":
    main()
