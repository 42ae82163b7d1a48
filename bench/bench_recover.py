"""Recovery training throughput on the CPU: tokens per second, full fine-tuning against LoRA.

    .venv/bin/python bench/bench_recover.py [--repeats 7]

A small GQA Llama (4 layers, hidden 256, 4 heads over 2 KV heads, intermediate 688, vocab
8000) trains on random tokens, global batch 8 x 128 in micro-batches of 4, with AdamW and
clipping as the recover stage does; LoRA uses shearc's defaults (rank 8, alpha 16, dropout
0.05, all seven projections). Full and LoRA steps alternate; medians over the steps after a
warm-up step each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

from shearc.compiler.source import hf_config
from shearc.runtime.stages.recover import with_lora
from shearc.sections import LoraRecoverySpec

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 8000, "hidden_size": 256,
          "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
          "max_position_embeddings": 512, "tie_word_embeddings": False}
GLOBAL_BATCH, MICRO_BATCH, SEQ_LEN = 8, 4, 128


def trainer(model: torch.nn.Module):
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)

    def step(batch: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        for micro in batch.split(MICRO_BATCH):
            (model(input_ids=micro, labels=micro).loss * len(micro) / len(batch)).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()

    return step, sum(p.numel() for p in trainable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    full_model = AutoModelForCausalLM.from_config(hf_config(CONFIG)).train()
    lora_model = AutoModelForCausalLM.from_config(hf_config(CONFIG))
    lora_model.load_state_dict(full_model.state_dict())
    lora_model = with_lora(lora_model, LoraRecoverySpec(method="lora")).train()
    full_step, full_trainable = trainer(full_model)
    lora_step, lora_trainable = trainer(lora_model)
    generator = torch.Generator().manual_seed(0)
    times = {"full": [], "lora": []}
    for run in range(args.repeats + 1):
        batch = torch.randint(0, CONFIG["vocab_size"], (GLOBAL_BATCH, SEQ_LEN), generator=generator)
        for name, step in (("full", full_step), ("lora", lora_step)):
            started = time.perf_counter()
            step(batch)
            if run:  # the first is a warm-up
                times[name].append(time.perf_counter() - started)
    tokens = GLOBAL_BATCH * SEQ_LEN
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{sum(p.numel() for p in full_model.parameters()):,} parameters")
    print("| recovery | trainable parameters | step median (ms) | tokens/s |")
    print("|---|---|---|---|")
    for name, trainable in (("full", full_trainable), ("lora", lora_trainable)):
        median = statistics.median(times[name])
        print(f"| {name} | {trainable:,} | {1000 * median:.1f} | {tokens / median:,.0f} |")


if __name__ == "__main__":
    main()
