"""How far the finalize check's tolerance sits from right slices and from a wrong one, on the real model.

    .venv/bin/python bench/bench_logits_check.py --seeds 0 1 2 [--held bf16]

SmolLM2-135M (30 layers, tests/real/assets.py; held in fp32, or in bf16 as a plan that computes in bf16
holds it; the check computes in fp32 either way), masks from weight magnitudes at three targets (heads
and intermediate; deeper cuts; hidden too), checked on 8 windows of 128 tokens of real text (Python's
docs, its source, licence texts) as the finalize stage checks them, for several seeds of the channel
permutation that measures the rounding spread; then one slice broken on purpose (every layer keeps the
intermediate channel next to the right one). Printed: per case and seed, the largest logit difference,
the rounding spread, their ratio, the tolerance (SPREAD_FACTOR x spread) and whether the check passed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = {"heads 6, intermediate 768": (6, 768, 576), "heads 3, intermediate 384": (3, 384, 576),
           "heads 6, intermediate 768, hidden 384": (6, 768, 384)}


def magnitude_masks(model, shape, heads: int, intermediate: int, hidden: int) -> dict[str, torch.Tensor]:
    masks = {"intermediate": torch.zeros(shape.layers, shape.intermediate),
             "query_head": torch.ones(shape.layers, shape.heads)}
    for layer, block in enumerate(model.model.layers):
        masks["intermediate"][layer, block.mlp.down_proj.weight.float().abs().sum(0).topk(intermediate).indices] = 1
    masks["query_head"][:, heads:] = 0  # whole KV groups, from the last
    if hidden < shape.hidden:
        masks["hidden"] = torch.zeros(shape.hidden)
        masks["hidden"][model.model.embed_tokens.weight.float().abs().sum(0).topk(hidden).indices] = 1
    return masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--held", choices=["fp32", "bf16"], default="fp32",
                        help="the dtype the source is held in (the check computes in fp32 either way)")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shearc.compiler.families import ADAPTERS
    from shearc.runtime import slicing
    from shearc.runtime.logits_check import SPREAD_FACTOR, compare_logits
    from shearc.runtime.models import build_dense
    from tests.helpers import off_by_one
    from tests.real.assets import real_model, text_domains

    model_dir = real_model()
    held = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.held]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=held).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    adapter = ADAPTERS.get("LlamaForCausalLM")
    shape = adapter.shape_of(model.config)
    config = json.loads((model_dir / "config.json").read_text())
    documents = text_domains()
    windows = [tokenizer(doc, return_tensors="pt").input_ids[0, :128] for name in documents
               for doc in documents[name][3:6]][:8]

    right = slicing.kept_units

    def check(masks, seed, kept=right):
        slicing.kept_units = kept
        try:
            state, target = slicing.finalize_state(model.state_dict(), adapter, masks, shape, tied=True)
        finally:
            slicing.kept_units = right
        dense = build_dense(adapter.config_for(config, target), state, adapter)
        return compare_logits(model, masks, dense, adapter, windows, seed=seed)

    tokens = sum(len(w) for w in windows)
    print(f"SmolLM2-135M held in {args.held}, {tokens} tokens; tolerance = {SPREAD_FACTOR:g} x spread")
    print("| case | seed | max difference | rounding spread | difference / spread | tolerance | top-1 | KL | passed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, target in TARGETS.items():
        masks = magnitude_masks(model, shape, *target)
        for seed in args.seeds:
            row(name, seed, check(masks, seed))
    masks = magnitude_masks(model, shape, *TARGETS["heads 6, intermediate 768"])
    row("one channel off (broken)", args.seeds[0],
        check(masks, args.seeds[0], kept=lambda m, s: off_by_one(right(m, s), s)))


def row(name: str, seed: int, result) -> None:
    print(f"| {name} | {seed} | {result.max_difference:.2e} | {result.rounding_spread:.2e} | "
          f"{result.max_difference / result.rounding_spread:.2f} | {result.tolerance:.2e} | "
          f"{result.top1_agreement:.1%} | {result.kl:.1e} | {'yes' if result.passed else 'no'} |")


if __name__ == "__main__":
    main()
