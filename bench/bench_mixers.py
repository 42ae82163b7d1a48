"""What a mixer update costs inside the training loop (CPU), per eval.

    .venv/bin/python bench/bench_mixers.py [--repeats 7]

DRPruning refits one scaling law per domain at every eval once enough points exist;
this times one fit (pruning form with sparsity, and continued-pretraining form) on 32
noisy points, and a whole 7-domain DRPruning update, against dynamic batch loading.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from shearc.runtime.mixers import MIXER_IMPLEMENTATIONS, Observation, StageInfo
from shearc.runtime.mixers.drpruning import DRPruningMixer as DRPruningImplementation
from shearc.runtime.mixers.scaling_law import fit_scaling_law
from shearc.sections import DRPruningSpec, DynamicBatchLoadingSpec

DOMAINS = 7


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def mixer_after_history(params, points: int) -> tuple:
    """A mixer 32 evals into Sheared-LLaMA's pruning stage, and the observation of the next eval."""
    rng = np.random.default_rng(0)
    mixer = MIXER_IMPLEMENTATIONS.get(params.method)([f"d{i}" for i in range(DOMAINS)], np.full(DOMAINS, 1 / DOMAINS),
                                                     1.5 + 0.1 * np.arange(DOMAINS), params)
    mixer.start_stage(StageInfo("prune", total_steps=3200, target_sparsity=0.8))
    observations = []
    for point in range(1, points + 1):
        step = 50 * point
        sparsity = 0.8 * min(step / 640, 1)
        tokens = np.full(DOMAINS, 32 * 4096 * step / DOMAINS)
        losses = 30 * tokens ** -0.2 * sparsity ** 0.05 + 1.4 + rng.normal(0, 0.01, DOMAINS)
        observations.append(Observation(step, losses, tokens, sparsity=sparsity))
    if isinstance(mixer, DRPruningImplementation):  # its history, as if the earlier evals had run
        mixer.history = [[*o.tokens, o.sparsity, *o.losses] for o in observations[:-1]]
    return mixer, observations[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    tokens = np.geomspace(1e7, 4e8, 32)
    sparsity = np.minimum(np.linspace(0.02, 1.6, 32), 0.8)
    pruning_losses = 30 * tokens ** -0.2 * sparsity ** 0.05 + 1.4 + rng.normal(0, 0.01, 32)
    recovery_losses = 30 * tokens ** -0.2 + 1.4 + rng.normal(0, 0.01, 32)
    rows = [
        ("one fit, pruning law (A, alpha, beta, E), 32 points",
         timed(lambda: fit_scaling_law(tokens, pruning_losses, sparsity), args.repeats)),
        ("one fit, continued-pretraining law (A, alpha, E), 32 points",
         timed(lambda: fit_scaling_law(tokens, recovery_losses), args.repeats)),
    ]
    for params in (DRPruningSpec(method="drpruning"), DynamicBatchLoadingSpec(method="dynamic-batch-loading")):
        mixer, observation = mixer_after_history(params, 32)
        state = mixer.state_dict()

        def update(mixer=mixer, observation=observation, state=state):
            mixer.load_state_dict(state)
            mixer.update(observation)

        rows.append((f"{params.method} update, {DOMAINS} domains, 32 evals of history", timed(update, args.repeats)))
    print("| measurement | median (s) | min (s) | runs |")
    print("|---|---|---|---|")
    for label, times in rows:
        print(f"| {label} | {statistics.median(times):.4g} | {min(times):.4g} | {len(times)} |")


if __name__ == "__main__":
    main()
