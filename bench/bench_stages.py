"""Whole stages against bare PyTorch doing the same forwards, on a real checkpoint.

    .venv/bin/python bench/bench_stages.py --model gemma3 --repeats 3
    .venv/bin/python bench/bench_stages.py --model smollm2 --repeats 3

Each turn runs the real tier's taylor plan (heads and intermediate, LoRA recovery, per-domain evaluation)
with `shearc run`, reading each stage's seconds from metrics.jsonl; then, in the same process and on the
same windows, bare PyTorch does the forwards that stage does, with nothing else:
- finalize: the source and the dense model on every check window, and the dense model once more on the
  windows the rounding spread is measured on (logits, as transformers returns them);
- recover: the same number of LoRA steps of the same shape (peft, forward, cross-entropy over the full
  logits, backward, clipping, AdamW), the loop's eval forwards, and the merge;
- evaluate: source and result on the same eval windows (forward, cross-entropy over the full logits),
  and the same latency forwards.
Printed: per stage, shearc's seconds, the bare seconds (medians over turns) and the median per-turn ratio; a
first turn warms the process up and is not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("finalize", "recover", "evaluate")


def make_plan(work: Path, model: str) -> tuple[Path, Path]:
    from tests.real.assets import GEMMA3, SMOLLM2, real_model, write_text_domains
    from tests.real.test_real_gemma import RUNS
    from tests.real.test_real_model import PRUNE, compile_real

    text = write_text_domains(work / "text")
    if model == "gemma3":
        run = RUNS["taylor"]
        model_dir = real_model(GEMMA3)
        prune = {**run["prune"], "reconstruct": None}  # the selection alone
        plan = compile_real(work, model_dir, text, prune, run["recovery"], target=run["target"],
                            evaluation=run["evaluation"])
    else:
        model_dir = real_model(SMOLLM2)
        plan = compile_real(work, model_dir, text, PRUNE["taylor"], {"method": "lora", "lr": 1e-4})
    return plan, model_dir


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def batches(windows: list[np.ndarray], size: int) -> list[torch.Tensor]:
    """Equal-length windows in batches of `size`, as the eval loop batches them."""
    by_length: dict[int, list[np.ndarray]] = {}
    for window in windows:
        by_length.setdefault(len(window), []).append(window)
    return [torch.as_tensor(np.stack(group[start:start + size]).astype(np.int64))
            for group in by_length.values() for start in range(0, len(group), size)]


@torch.no_grad()
def plain_eval(model: torch.nn.Module, eval_batches: list[torch.Tensor]) -> None:
    model.eval()
    for ids in eval_batches:
        logits = model(input_ids=ids).logits[:, :-1].float()
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")


def bare_turn(plan: dict, plan_dir: Path, run_dir: Path, model_dir: Path) -> dict[str, float]:
    """Bare PyTorch's seconds for each stage's forwards, on the run's own windows and weights."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shearc.compiler.families import ADAPTERS
    from shearc.plan import DataPlan
    from shearc.runtime.data import load_domains
    from shearc.runtime.logits_check import SPREAD_WINDOWS
    from shearc.runtime.models import build_dense
    from shearc.runtime.slicing import finalize_state

    stages = {s["stage"]: s for s in plan["stages"]}
    micro = plan["schedule"]["micro_batch"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = DataPlan.model_validate(plan["data"])
    adapter = ADAPTERS.get(plan["source"]["architecture"])
    source = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    shape, tied = adapter.shape_of(source.config), bool(source.config.tie_word_embeddings)

    def pruned() -> torch.nn.Module:  # the dense model finalize made: the source sliced by the run's masks
        state, _ = finalize_state(source.state_dict(), adapter, load_file(run_dir / "masks.safetensors"), shape,
                                  tied=tied)
        return build_dense(plan["target"]["config"], {k: v.clone() for k, v in state.items()}, adapter)
    seconds = {}

    check = stages["finalize"]["check"]
    domains = load_domains(data, base_dir=plan_dir, tokenizer=tokenizer, seq_len=check["tokens"], seed=0,
                           cache_dir=run_dir / "cache")
    per_domain = -(-check["windows"] // len(domains))
    windows = [torch.as_tensor(w.astype(np.int64)) for d in domains
               for w in d.eval_windows(check["tokens"], per_domain)][:check["windows"]]
    dense = pruned().eval()

    def finalize() -> None:
        with torch.no_grad():
            for window in windows:
                source(input_ids=window[None]).logits.float()
                dense(input_ids=window[None]).logits.float()
            for window in windows[::-(-len(windows) // SPREAD_WINDOWS)][:SPREAD_WINDOWS]:  # as compare_logits
                dense(input_ids=window[None]).logits.float()
    seconds["finalize"] = timed(finalize)

    recover = stages["recover"]["params"]
    train_domains = load_domains(data, base_dir=plan_dir, tokenizer=tokenizer, seq_len=recover["seq_len"], seed=0,
                                 cache_dir=run_dir / "cache")
    rows = np.concatenate([d.train for d in train_domains])
    picks = np.random.default_rng(0).choice(len(rows), (recover["steps"], recover["global_batch"]))
    eval_windows = [w for d in train_domains
                    for w in d.eval_windows(recover["seq_len"], stages["recover"]["eval_sequences"])]
    student = pruned()

    def train() -> None:
        model = get_peft_model(student, LoraConfig(r=recover["rank"], lora_alpha=recover["alpha"],
                                                   lora_dropout=recover["dropout"],
                                                   target_modules=list(recover["target_modules"]),
                                                   task_type="CAUSAL_LM"))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recover["lr"],
                                      betas=tuple(plan["schedule"]["betas"]),
                                      weight_decay=plan["schedule"]["weight_decay"])
        for step, pick in enumerate(picks, start=1):
            model.train()
            ids = torch.as_tensor(rows[pick].astype(np.int64))
            optimizer.zero_grad(set_to_none=True)
            for part in ids.split(micro):
                logits = model(input_ids=part).logits[:, :-1].float()
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), part[:, 1:].reshape(-1))
                (loss * len(part) / len(ids)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), plan["schedule"]["grad_clip"])
            optimizer.step()
            if step % recover["eval_interval"] == 0 or step == recover["steps"]:
                plain_eval(model, batches(eval_windows, micro))
        model.merge_and_unload()
    seconds["recover"] = timed(train)

    evaluate = stages["evaluate"]["params"]
    eval_domains = load_domains(data, base_dir=plan_dir, tokenizer=tokenizer, seq_len=evaluate["seq_len"], seed=0,
                                cache_dir=run_dir / "cache")
    eval_batches = batches([w for d in eval_domains
                            for w in d.eval_windows(evaluate["seq_len"], evaluate["sequences_per_domain"])], micro)
    latency = torch.randint(0, plan["target"]["config"]["vocab_size"], (evaluate["latency_batch"], evaluate["seq_len"]))
    result = build_dense(plan["target"]["config"], load_file(
        sorted((run_dir / "checkpoints").glob("*-recover-*"))[-1] / "model.safetensors"), adapter).eval()

    def evaluation() -> None:
        for model in (source, result):
            plain_eval(model, eval_batches)
            with torch.no_grad():
                for _ in range(6):  # forward_latency_ms: a warm-up and five timed
                    model(input_ids=latency)
    seconds["evaluate"] = timed(evaluation)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["gemma3", "smollm2"], default="gemma3")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from shearc.runtime.metrics import MetricsLog
    from shearc.runtime.run import run_plan

    turns = []
    for turn in range(-1, args.repeats):  # turn -1 warms the process up (the first run pays its page faults)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            plan_path, model_dir = make_plan(work, args.model)
            plan = json.loads(plan_path.read_text())
            run_dir = run_plan(plan_path)
            ours = {r["stage"]: r["seconds"] for r in MetricsLog(run_dir / "metrics.jsonl").read("stage")}
            bare = bare_turn(plan, work, run_dir, model_dir)
            measured = {stage: (ours[stage], bare[stage]) for stage in STAGES}
            print(f"turn {turn + 1}{' (warm-up, not counted)' if turn < 0 else ''}: "
                  + ", ".join(f"{s} {o:.1f} s / {b:.1f} s" for s, (o, b) in measured.items()), file=sys.stderr)
            if turn >= 0:
                turns.append(measured)
    print(f"{args.model} on CPU ({torch.get_num_threads()} threads), {args.repeats} turns; seconds, medians")
    print("| stage | shearc (the whole stage) | bare PyTorch (its forwards) | shearc / bare (median of turns) |")
    print("|---|---|---|---|")
    for stage in STAGES:
        pairs = [turn[stage] for turn in turns]
        print(f"| {stage} | {statistics.median(o for o, _ in pairs):.1f} | {statistics.median(b for _, b in pairs):.1f}"
              f" | {statistics.median(o / b for o, b in pairs):.2f} |")


if __name__ == "__main__":
    main()
