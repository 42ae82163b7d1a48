"""Pruning performance on the CPU: mask-learning overhead, and the speed-up the dense model delivers.

    .venv/bin/python bench/bench_prune.py [--repeats 7]

1. A hard-concrete step (sample masks, forward through the hooks, LM loss + Lagrangian,
   backward, flip the multipliers' gradients, clip, AdamW, clamp) against a plain training
   step of the same model on the same batch. Steps alternate, so both see the same machine.
2. Forward latency of a model emitted by shearc (magnitude pruning, fold and slice) against
   the source's, next to the ratio of their forward FLOPs per token (the ideal speed-up).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from shearc.compiler.estimates import forward_flops_per_token
from shearc.compiler.families import Shape
from shearc.compiler.graph import build_graph
from shearc.compiler.source import hf_config, introspect
from shearc.runtime.importance.methods import MagnitudeImportance
from shearc.runtime.importance.selection import score_and_select
from shearc.runtime.masks.hooks import MaskHooks
from shearc.runtime.masks.l0 import L0Masks
from shearc.runtime.slicing import finalize_state
from shearc.runtime.stages.mask_learning import HardConcreteTask
from shearc.sections import HardConcretePruneSpec, MagnitudePruneSpec

# Sheared-LLaMA's 7B -> 1.3B proportions (3/4 of the layers, half of every width), scaled down.
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 8000, "hidden_size": 1024,
          "intermediate_size": 2752, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 8,
          "max_position_embeddings": 1024, "tie_word_embeddings": False}
TARGET = Shape(layers=6, hidden=512, heads=4, kv_heads=4, intermediate=1376, head_dim=128)


def median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def step_overhead(repeats: int, batch: torch.Tensor) -> tuple[float, float, float]:
    """(plain ms, masked ms, median of the per-pair ratios): each pair runs back to back."""
    source = introspect(CONFIG, "local", None)
    torch.manual_seed(0)
    plain = AutoModelForCausalLM.from_config(hf_config(CONFIG))
    masked = AutoModelForCausalLM.from_config(hf_config(CONFIG))
    masked.load_state_dict(plain.state_dict())
    params = HardConcretePruneSpec(method="hard-concrete")
    units = ["layer", "hidden", "kv_group", "intermediate"]
    l0 = L0Masks(source.shape, TARGET, units, params, torch.Generator().manual_seed(0))
    hooks = MaskHooks(masked, source.adapter)
    task = HardConcreteTask(l0, hooks, params, sum(p.numel() for p in plain.parameters()), source.parameter_count, 1)
    plain_optimizer = torch.optim.AdamW(plain.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
    masked_optimizer = torch.optim.AdamW([
        {"params": list(masked.parameters()), "lr": 1e-4},
        {"params": list(l0.log_alpha.parameters()), "lr": 1.0},
        {"params": [*l0.lambda_1.parameters(), *l0.lambda_2.parameters()], "lr": 1.0}], betas=(0.9, 0.95),
        weight_decay=0.0)

    def plain_step() -> None:
        plain_optimizer.zero_grad(set_to_none=True)
        plain(input_ids=batch, labels=batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 1.0)
        plain_optimizer.step()

    def masked_step(step: int) -> None:
        masked_optimizer.zero_grad(set_to_none=True)
        task.lm_loss(masked, batch, step, 0).mean.backward()
        task.extra_loss(step).backward()
        task.before_optimizer_step()
        torch.nn.utils.clip_grad_norm_([p for g in masked_optimizer.param_groups for p in g["params"]], 1.0)
        masked_optimizer.step()
        task.after_optimizer_step()

    plain_times, masked_times = [], []
    for step in range(repeats + 1):  # the first pair warms up
        started = time.perf_counter()
        plain_step()
        middle = time.perf_counter()
        masked_step(step)
        ended = time.perf_counter()
        if step:
            plain_times.append(middle - started)
            masked_times.append(ended - middle)
    ratios = [m / p for p, m in zip(plain_times, masked_times, strict=True)]
    return median_ms(plain_times), median_ms(masked_times), statistics.median(ratios)


def speedup(repeats: int, batch: torch.Tensor) -> tuple[float, float, int, int]:
    source = introspect(CONFIG, "local", None)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config(CONFIG)).eval()
    masks = score_and_select(model, source.adapter, build_graph(source), source.shape, TARGET,
                             MagnitudeImportance(MagnitudePruneSpec(method="magnitude")), list)
    state, reached = finalize_state(model.state_dict(), source.adapter, masks, source.shape, tied=False)
    dense = AutoModelForCausalLM.from_config(hf_config(source.adapter.config_for(CONFIG, reached))).eval()
    dense.load_state_dict(state, strict=True)
    source_times, dense_times = [], []
    with torch.no_grad():
        for run in range(repeats + 1):
            started = time.perf_counter()
            model(input_ids=batch)
            middle = time.perf_counter()
            dense(input_ids=batch)
            ended = time.perf_counter()
            if run:
                source_times.append(middle - started)
                dense_times.append(ended - middle)
    seq = batch.shape[1]
    return (median_ms(source_times), median_ms(dense_times),
            forward_flops_per_token(source, source.shape, seq), forward_flops_per_token(source, reached, seq))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; source: {CONFIG['num_hidden_layers']} "
          f"layers x {CONFIG['hidden_size']} hidden, vocab {CONFIG['vocab_size']}; target {TARGET}")
    train_batch = torch.randint(0, CONFIG["vocab_size"], (2, 128), generator=generator)
    plain_ms, masked_ms, ratio = step_overhead(args.repeats, train_batch)
    print("| training step, batch 2 x 128 | median (ms) |")
    print("|---|---|")
    print(f"| plain | {plain_ms:.1f} |")
    print(f"| hard-concrete mask learning | {masked_ms:.1f} |")
    print(f"| ratio (median of per-pair ratios) | {ratio:.3f} |")
    print()
    forward_batch = torch.randint(0, CONFIG["vocab_size"], (1, 512), generator=generator)
    source_ms, dense_ms, source_flops, dense_flops = speedup(args.repeats, forward_batch)
    ideal, realised = source_flops / dense_flops, source_ms / dense_ms
    print("| forward, batch 1 x 512 | median (ms) | FLOPs/token |")
    print("|---|---|---|")
    print(f"| source | {source_ms:.1f} | {source_flops:,} |")
    print(f"| emitted dense model | {dense_ms:.1f} | {dense_flops:,} |")
    print(f"| speed-up: realised {realised:.2f}x, ideal {ideal:.2f}x | realised / ideal = {realised / ideal:.2f} | |")


if __name__ == "__main__":
    main()
