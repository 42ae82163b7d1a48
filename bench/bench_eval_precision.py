"""What evaluating in bf16 does to a real checkpoint's per-domain losses.

    .venv/bin/python bench/bench_eval_precision.py [--model smollm2|gemma3]

The real tier's checkpoint (SmolLM2-135M or Gemma 3 270M, tests/real/assets.py) on the real tier's eval windows
(8 windows of 128 tokens per domain, begun as its tokenizer begins a text; tests/real/plain.py), in the four ways
a run could hold and compute it: fp32; fp32 weights under bf16 autocast (what training evaluates); bf16 weights
under bf16 autocast (the source at evaluation under a plan that computes in bf16); bf16 weights alone. Printed: a
table of per-domain losses, then each way's largest difference from fp32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WAYS = {"fp32": (torch.float32, False), "fp32 weights, bf16 autocast": (torch.float32, True),
        "bf16 weights, bf16 autocast": (torch.bfloat16, True), "bf16 weights": (torch.bfloat16, False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["smollm2", "gemma3"], default="smollm2")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.real.assets import GEMMA3, SMOLLM2, real_model, write_text_domains
    from tests.real.plain import _domain_losses

    model_dir = real_model(GEMMA3 if args.model == "gemma3" else SMOLLM2)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    losses = {}
    with tempfile.TemporaryDirectory() as scratch:
        text = write_text_domains(Path(scratch))
        for way, (dtype, autocast) in WAYS.items():
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                losses[way] = _domain_losses(model, tokenizer, text, eval_fraction=0.1, seed=0, length=128, count=8)
    domains = list(losses["fp32"])
    print(f"| {args.model} | " + " | ".join(domains) + " | largest difference from fp32 |")
    print("|---" * (len(domains) + 2) + "|")
    for way, row in losses.items():
        largest = max(abs(row[d] - losses["fp32"][d]) for d in domains)
        print(f"| {way} | " + " | ".join(f"{row[d]:.4f}" for d in domains) + f" | {largest:.4f} |")


if __name__ == "__main__":
    main()
