"""What plain transformers computes on a run's eval windows, begun as the tokenizer begins a text: the
yardstick for the per-domain losses a run reports (written here without shearc's windowing code)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from shearc.runtime.data.domains import held_out


def eval_stream(path: Path, tokenizer, eval_fraction: float, seed: int) -> list[int]:
    """The held-out documents of one JSONL domain, each as [BOS] tokens [EOS], one after another."""
    stream = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if held_out(number, seed, eval_fraction):
            ids = tokenizer(json.loads(line)["text"], add_special_tokens=False)["input_ids"]
            stream += [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
    return stream


def windows_as_used(stream: list[int], tokenizer, length: int, count: int) -> list[list[int]]:
    """The stream cut into `count` windows of `length` tokens that begin as `tokenizer(text)` begins: behind its
    BOS where it puts one in front of a text (taken from the stream where a document starts there)."""
    bos = tokenizer.bos_token_id
    begins_with_bos = tokenizer("x")["input_ids"][:1] == [bos] and bos is not None
    windows, position = [], 0
    while position < len(stream) and len(windows) < count:
        if begins_with_bos and stream[position] != bos:
            window = [bos, *stream[position:position + length - 1]]
            position += length - 1
        else:
            window = stream[position:position + length]
            position += length
        if len(window) > 1:
            windows.append(window)
    return windows


@torch.no_grad()
def plain_losses(model_dir: Path, text: dict[str, Path], *, eval_fraction: float, seed: int, length: int,
                 count: int, precision: str) -> dict[str, float]:
    """Per domain, the token-weighted mean of `model(ids, labels=ids).loss` over its first `count` windows, in the
    precision the run evaluated in (`precision`: the plan's choice for a CPU; bf16 holds the model in bf16 and
    autocasts, as a user serving it in bf16 would)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        return _domain_losses(model, tokenizer, text, eval_fraction=eval_fraction, seed=seed, length=length,
                              count=count)


def _domain_losses(model, tokenizer, text: dict[str, Path], *, eval_fraction: float, seed: int, length: int,
                   count: int) -> dict[str, float]:
    losses = {}
    for name, path in text.items():
        total = tokens = 0.0
        for window in windows_as_used(eval_stream(path, tokenizer, eval_fraction, seed), tokenizer, length, count):
            ids = torch.tensor([window])
            total += model(input_ids=ids, labels=ids).loss.item() * (len(window) - 1)
            tokens += len(window) - 1
        losses[name] = total / tokens
    return losses
