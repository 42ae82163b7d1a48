"""Train the embedded default's source model: a small GQA Llama on shearc's generated corpus.

    .venv/bin/python scripts/train_tiny_source.py --out specs/tiny/model

Writes, into --out: config.json, model.safetensors, the tokenizer (byte-level BPE trained on the
corpus with `tokenizers`, digits split one by one so arithmetic is learnable), training_log.json
(per-domain eval loss at every eval) and TRAINING.md (how it was trained, the final per-domain
losses and how much each fell over the last fifth of training). Deterministic for a given seed and
thread count. The output directory is written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from shearc.canonical import atomic_directory
from shearc.corpus.domains import DOMAINS
from shearc.corpus.writer import write_corpus
from shearc.runtime.data.domains import load_domains
from shearc.runtime.data.evaluation import domain_eval_losses
from shearc.runtime.data.sampler import MixtureSampler

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]


def model_config(vocab_size: int, args: argparse.Namespace):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.seq_len * 2, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        architectures=["LlamaForCausalLM"],
    )


def train_tokenizer(data: Path, vocab_size: int, directory: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                       pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.decoder = decoders.ByteLevel()
    texts = (json.loads(line)["text"] for domain in DOMAINS
             for line in (data / domain / "train.jsonl").read_text().splitlines())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>",
                                      eos_token="</s>")
    wrapped.save_pretrained(directory)
    return wrapped


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("specs/tiny/model"))
    parser.add_argument("--work", type=Path, default=Path("runs/tiny-source"), help="corpus and token cache")
    parser.add_argument("--train-documents", type=int, default=12000)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--intermediate", type=int, default=704)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-interval", type=int, default=100)
    parser.add_argument("--eval-sequences", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(args.seed)
    data = args.work / "data"
    write_corpus(data, train_documents=args.train_documents, seed=args.seed)
    with atomic_directory(args.out) as staging:
        tokenizer = train_tokenizer(data, args.vocab, staging)
        domains = load_domains(
            {"domains": [{"name": d, "train": [f"{d}/train.jsonl"], "eval": [f"{d}/eval.jsonl"]} for d in DOMAINS],
             "text_field": "text", "eval_fraction": 0.0},
            base_dir=data, tokenizer=tokenizer, seq_len=args.seq_len, seed=args.seed, cache_dir=args.work)
        model = AutoModelForCausalLM.from_config(model_config(len(tokenizer), args))
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
        sampler = MixtureSampler(domains, seed=args.seed)
        weights = np.full(len(domains), 1 / len(domains))
        log, started = [], time.perf_counter()

        def evaluate(step: int) -> None:
            losses = domain_eval_losses(model, domains, seq_len=args.seq_len, max_sequences=args.eval_sequences,
                                        batch_size=16)
            log.append({"step": step, "seconds": round(time.perf_counter() - started, 1),
                        "eval_loss": {d.name: round(float(v), 4) for d, v in zip(domains, losses, strict=True)}})
            print(f"step {step:5d}  " + "  ".join(f"{k} {v:.3f}" for k, v in log[-1]["eval_loss"].items()),
                  flush=True)

        evaluate(0)
        for step in range(args.steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, args)
            ids = torch.as_tensor(sampler.next_batch(weights, args.batch).input_ids)
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if (step + 1) % args.eval_interval == 0 or step + 1 == args.steps:
                evaluate(step + 1)
        model.save_pretrained(staging)
        reloaded = AutoTokenizer.from_pretrained(staging)
        sample = domains[0].eval[:64].tolist()
        assert reloaded.decode(sample) == tokenizer.decode(sample), "the saved tokenizer does not round-trip"
        (staging / "training_log.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                               "evals": log}, indent=1))
        (staging / "TRAINING.md").write_text(training_note(model, tokenizer, args, log, sampler))


def training_note(model, tokenizer, args: argparse.Namespace, log: list[dict], sampler: MixtureSampler) -> str:
    params = sum(p.numel() for p in model.parameters())
    tail = next(entry for entry in log if entry["step"] >= 0.8 * args.steps)
    final = log[-1]
    rows = "\n".join(f"| {name} | {log[0]['eval_loss'][name]:.3f} | {tail['eval_loss'][name]:.3f} | {loss:.3f} | "
                     f"{(tail['eval_loss'][name] - loss) / tail['eval_loss'][name]:.1%} |"
                     for name, loss in final["eval_loss"].items())
    tokens = int(sampler.tokens.sum())
    return f"""# The embedded source model

A {params:,}-parameter Llama ({args.layers} layers, hidden {args.hidden}, {args.heads} query heads over
{args.kv_heads} key/value heads, intermediate {args.intermediate}, vocabulary {len(tokenizer)}, untied
embeddings), trained from scratch on shearc's generated corpus so that the embedded default
(`specs/tiny_*.yaml`) has a real language model to prune without downloading one.

Trained by

    .venv/bin/python scripts/train_tiny_source.py --out specs/tiny/model

on {args.train_documents:,} generated documents per domain (`shearc corpus`, seed {args.seed}), mixed
uniformly: {args.steps:,} steps of {args.batch} x {args.seq_len} tokens ({tokens:,} tokens), AdamW
(betas 0.9/0.95, weight decay 0.1), peak lr {args.lr} after {args.warmup} warm-up steps, cosine to
10%, gradient norm clipped to 1, fp32, {final['seconds'] / 60:.0f} minutes on 2 CPU cores. The tokenizer is a
byte-level BPE trained on the same corpus with digits split one by one.

Per-domain eval loss (nats/token, {args.eval_sequences} sequences of the generated eval split per domain);
the last column is how much it still fell over the final fifth of training (from step {tail['step']}):

| domain | step 0 | step {tail['step']} | step {final['step']} (final) | fall over the last fifth |
|---|---|---|---|---|
{rows}

Every eval is in `training_log.json`.
"""


if __name__ == "__main__":
    main()
