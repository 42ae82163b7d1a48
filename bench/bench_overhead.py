"""Overhead of shearc's stages against bare PyTorch doing the same arithmetic, on the real model, in fp32.

    .venv/bin/python bench/bench_overhead.py --repeats 3

(bench_throughput.py measures what precision, compilation and the fused optimizer gain over the bare loop.)

On SmolLM2-135M (tests/real/assets.py) and real text, each pair measured side by side, in turns:
- recover: shearc's training loop (train(): the LM task, the constant mixer, the mixture sampler,
  per-step logging) against a bare loop (forward, cross-entropy, backward per micro-batch, gradient
  clipping, AdamW with the same settings), from the same weights, on the same number of steps of the
  same batch shape; tokens/s up to the last optimizer step (the loop's closing evaluation excluded);
- taylor: shearc's first-order gradient pass over the calibration windows (accumulate_gradients)
  against bare forward+backward over the same windows in the same micro-batches;
- evaluate: shearc's per-domain eval losses (domain_eval_losses) against a bare no-grad forward and
  cross-entropy over the same windows.
Printed: per pair, shearc's and the bare tokens/s (medians) and the median of the per-turn ratios.
"""

from __future__ import annotations

import argparse
import copy
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

STEPS, GLOBAL_BATCH, MICRO_BATCH, SEQ_LEN, LR = 4, 4, 2, 128, 2e-5
CALIBRATION_WINDOWS = 8
EVAL_SEQUENCES = 8


def setup(work: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shearc.compiler.compile import compile_spec, write_plan
    from shearc.plan import read_plan
    from shearc.runtime.data import load_domains
    from tests.helpers import write_spec
    from tests.real.assets import real_model, write_text_domains
    from tests.real.test_real_model import PRUNE, real_spec

    model_dir = real_model()
    spec = real_spec(model_dir, write_text_domains(work / "text"), PRUNE["taylor"])
    spec["runtime"] = {"device": "cpu", "precision": "fp32"}
    spec["recovery"].update(steps=STEPS, global_batch=GLOBAL_BATCH, seq_len=SEQ_LEN, eval_interval=STEPS, lr=LR)
    spec["schedule"]["micro_batch"] = MICRO_BATCH
    plan_path = work / "plan.json"
    write_plan(compile_spec(write_spec(work, spec), plan_path), plan_path)
    plan = read_plan(plan_path)
    domains = load_domains(plan.data, base_dir=work, tokenizer=AutoTokenizer.from_pretrained(model_dir),
                           seq_len=SEQ_LEN, seed=0, cache_dir=work / "cache")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return plan, domains, model


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def shearc_recover(model, plan, domains, work: Path) -> float:
    from shearc.runtime.data import MixtureSampler
    from shearc.runtime.metrics import MetricsLog
    from shearc.runtime.mixers import build_mixer
    from shearc.runtime.stages.recover import LanguageModelling
    from shearc.runtime.train.loop import Schedule, adamw, train

    params = plan.stage("recover")
    device = torch.device("cpu")
    metrics = MetricsLog(work / "metrics.jsonl")
    optimizer = adamw(list(model.parameters()), plan.schedule, device, fused=False, lr=LR)
    train(stage="recover", model=model.train(), optimizer=optimizer,
          schedule=Schedule.from_plan(params, plan), sampler=MixtureSampler(domains, seed=1),
          mixer=build_mixer(plan), eval_domains=domains, task=LanguageModelling(), metrics=metrics, device=device)
    tokens_per_second = metrics.read("train")[-1]["tokens_per_second"]
    metrics.close()
    (work / "metrics.jsonl").unlink()
    return tokens_per_second


def bare_recover(model, plan, batches: list[torch.Tensor]) -> float:
    schedule = plan.schedule
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=tuple(schedule.betas),
                                  weight_decay=schedule.weight_decay)
    model.train()
    started = time.perf_counter()
    for ids in batches:
        optimizer.zero_grad(set_to_none=True)
        for micro in ids.split(MICRO_BATCH):
            logits = model(input_ids=micro).logits[:, :-1].float()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), micro[:, 1:].reshape(-1))
            (loss * len(micro) / len(ids)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
        optimizer.step()
    return sum(b.numel() for b in batches) / (time.perf_counter() - started)


def bare_gradients(model, windows: list[torch.Tensor]) -> None:
    model.zero_grad(set_to_none=True)
    for batch in torch.stack(windows).split(MICRO_BATCH):
        model(input_ids=batch, labels=batch).loss.backward()
    model.zero_grad(set_to_none=True)


def batched_chunks(chunks: list[np.ndarray]) -> list[torch.Tensor]:
    """The chunks of one domain in micro-batches of equal length, as the eval loop batches them."""
    by_length: dict[int, list[np.ndarray]] = {}
    for chunk in chunks:
        by_length.setdefault(len(chunk), []).append(chunk)
    return [torch.as_tensor(np.stack(group[start:start + MICRO_BATCH]).astype(np.int64))
            for group in by_length.values() for start in range(0, len(group), MICRO_BATCH)]


def bare_eval(model, chunks: list[torch.Tensor]) -> None:
    model.eval()
    with torch.no_grad():
        for batch in chunks:
            logits = model(input_ids=batch).logits[:, :-1].float()
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    from shearc.runtime.data.evaluation import domain_eval_losses
    from shearc.runtime.importance.gradients import accumulate_gradients

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plan, domains, model = setup(work)
        initial = copy.deepcopy(model.state_dict())
        generator = np.random.default_rng(0)
        rows = np.concatenate([d.train for d in domains])
        batches = [torch.as_tensor(rows[generator.choice(len(rows), GLOBAL_BATCH)].astype(np.int64))
                   for _ in range(STEPS)]
        windows = [torch.as_tensor(rows[i].astype(np.int64)) for i in range(CALIBRATION_WINDOWS)]
        eval_batches = [batch for domain in domains
                        for batch in batched_chunks(domain.eval_windows(SEQ_LEN, EVAL_SEQUENCES))]
        eval_tokens = sum(b.numel() for b in eval_batches)
        results: dict[str, list[tuple[float, float]]] = {"recover": [], "taylor": [], "evaluate": []}
        for _ in range(args.repeats):
            model.load_state_dict(initial)
            ours = shearc_recover(model, plan, domains, work)
            model.load_state_dict(initial)
            bare = bare_recover(model, plan, batches)
            results["recover"].append((ours, bare))
            model.load_state_dict(initial)
            tokens = CALIBRATION_WINDOWS * SEQ_LEN
            ours = tokens / timed(lambda: accumulate_gradients(model, windows, second_order=False,
                                                               batch_size=MICRO_BATCH))
            bare = tokens / timed(lambda: bare_gradients(model, windows))
            results["taylor"].append((ours, bare))
            ours = eval_tokens / timed(lambda: domain_eval_losses(model, domains, seq_len=SEQ_LEN,
                                                                  max_sequences=EVAL_SEQUENCES,
                                                                  batch_size=MICRO_BATCH, device="cpu"))
            bare = eval_tokens / timed(lambda: bare_eval(model, eval_batches))
            results["evaluate"].append((ours, bare))
        print(f"SmolLM2-135M on CPU ({torch.get_num_threads()} threads), {args.repeats} turns; tokens/s, medians")
        print("| stage | shearc | bare PyTorch | bare / shearc (median of turns) |")
        print("|---|---|---|---|")
        for stage, pairs in results.items():
            ratio = statistics.median(bare / ours for ours, bare in pairs)
            print(f"| {stage} | {statistics.median(o for o, _ in pairs):,.0f} | "
                  f"{statistics.median(b for _, b in pairs):,.0f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
