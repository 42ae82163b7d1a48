"""The taylor prune stage, data included, against bare forward+backward over its calibration windows.

    .venv/bin/python bench/bench_prune_stage.py [--turns 4] [--files 1]

On the real tier's checkpoint (SmolLM2-135M, tests/real/assets.py) and its three real text domains, the real
tier's taylor plan (8 calibration windows of 128 tokens, heads and intermediate channels, fp32 as Taylor holds
the source): the whole prune stage (`PruneStage.run`: loading the domains, so tokenizing every file into a fresh
data cache, drawing the windows, the gradient pass, scoring, the exact-shape selection, the stage's closing
checkpoint) in a fresh run directory, against a bare loop of forward and backward over the same windows in the
same micro-batches. Each turn is a fresh process, as a run is (what the stage imports counts), that loads the
model and times both, the stage first in even turns and second in odd ones (whichever runs second finds the
allocator warm). Printed: each side's seconds (medians of turns) and the median of the per-turn ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def plan_for(work: Path, files: int) -> Path:
    """The real tier's taylor plan; with `files` > 1 each domain's text is written that many times, as that many
    files (a corpus split into shards)."""
    from shearc.cli import main as shearc
    from tests.helpers import write_spec
    from tests.real.assets import real_model, write_text_domains
    from tests.real.test_real_model import PRUNE, real_spec

    spec = real_spec(real_model(), write_text_domains(work / "text"), PRUNE["taylor"])
    if files > 1:
        for copy in range(files):
            for name, path in write_text_domains(work / f"copy{copy}").items():
                path.rename(work / "text" / f"{name}-{copy:03d}.jsonl")
        for domain in spec["data"]["domains"]:
            domain["train"] = [str(work / "text" / f"{domain['name']}-*.jsonl")]
    plan = work / "plan.json"
    assert shearc(["compile", str(write_spec(work, spec)), "-o", str(plan)]) == 0
    return plan


def stage_seconds(plan_path: Path, model: torch.nn.Module, work: Path) -> tuple[float, list[torch.Tensor]]:
    """The prune stage in a fresh run directory over a fresh data cache; and the windows it drew."""
    from shearc.runtime.metrics import MetricsLog
    from shearc.runtime.run import checked_tokenizer
    from shearc.runtime.stages.base import STAGES, RunContext
    from shearc.runtime.stages.prune import calibration_windows
    from shearc.runtime.train.checkpoint import Checkpoints
    from shearc.runtime.verify import verify

    verified = verify(plan_path)
    plan = verified.plan
    run_dir = Path(tempfile.mkdtemp(dir=work))
    os.environ["SHEARC_CACHE"] = str(run_dir / "cache")
    context = RunContext(verified=verified, run_dir=run_dir, device=torch.device("cpu"),
                         metrics=MetricsLog(run_dir / "metrics.jsonl"), model=model,
                         tokenizer=checked_tokenizer(verified),
                         checkpoints=Checkpoints(run_dir / "checkpoints", plan.plan_sha256, 2))
    stage = STAGES.get("prune")(plan.stages[0])
    started = time.perf_counter()
    stage.run(context)
    seconds = time.perf_counter() - started
    params = plan.stages[0].params
    return seconds, calibration_windows(context, params.calibration_samples, params.calibration_seq_len)


def bare_seconds(model: torch.nn.Module, windows: list[torch.Tensor], micro_batch: int) -> float:
    started = time.perf_counter()
    model.zero_grad(set_to_none=True)
    for batch in torch.stack(windows).split(micro_batch):
        model(input_ids=batch, labels=batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def turn(plan_path: Path, stage_first: bool) -> None:
    """One turn in this (fresh) process: prints {"stage": seconds, "bare": seconds, "windows": n}."""
    from transformers import AutoModelForCausalLM

    from shearc.plan import read_plan
    from tests.real.assets import real_model

    micro_batch = read_plan(plan_path).schedule.micro_batch
    model = AutoModelForCausalLM.from_pretrained(real_model(), dtype=torch.float32)
    drawn = plan_path.parent / "windows.pt"  # the stage's windows, saved by the first (stage-first) turn
    with tempfile.TemporaryDirectory(dir=plan_path.parent) as work:
        if stage_first:
            stage, windows = stage_seconds(plan_path, model, Path(work))
            torch.save(windows, drawn)
            bare = bare_seconds(model.train(), windows, micro_batch)
        else:
            windows = torch.load(drawn)
            bare = bare_seconds(model.train(), windows, micro_batch)
            stage, again = stage_seconds(plan_path, model, Path(work))
            assert all(torch.equal(a, b) for a, b in zip(windows, again, strict=True))
    print(json.dumps({"stage": stage, "bare": bare, "windows": len(windows)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--files", type=int, default=1, help="copies of each domain's text, one file each")
    parser.add_argument("--turn", choices=["stage-first", "bare-first"], help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.turn:
        turn(Path(args.plan), args.turn == "stage-first")
        return
    with tempfile.TemporaryDirectory() as scratch:
        plan_path = plan_for(Path(scratch), args.files)
        stage, bare = [], []
        for number in range(args.turns):
            order = "stage-first" if number % 2 == 0 else "bare-first"
            out = subprocess.run([sys.executable, __file__, "--turn", order, "--plan", str(plan_path)], check=True,
                                 capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            stage.append(result["stage"])
            bare.append(result["bare"])
            print(f"turn {number} ({order}): stage {stage[-1]:.2f} s, bare {bare[-1]:.2f} s "
                  f"({result['windows']} windows)", file=sys.stderr)
    ratios = [s / b for s, b in zip(stage, bare, strict=True)]
    print(f"| taylor prune stage, {args.files} file(s) a domain | {statistics.median(stage):.2f} s | "
          f"{statistics.median(bare):.2f} s | {statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
