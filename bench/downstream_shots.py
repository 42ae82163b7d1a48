"""The generated downstream task on the embedded source model: accuracy by few-shot count and metric.

    .venv/bin/python bench/downstream_shots.py [--shots 0 3 5] [--limit N]

Writes the task `shearc corpus` writes (shearc/corpus/tasks.py, 200 questions, seed 0) to a temporary
folder and scores specs/tiny/model on it through the evaluate stage's own lm-eval path
(runtime/downstream.run_tasks), for acc and acc_norm at each few-shot count, with the wall time of
each. Prints a markdown table (docs/EVALUATION.md carries it); the embedded default's few-shot count
was chosen from it: the smallest at which the source clearly computes rather than guesses (1/4).
Needs the eval extra.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 1, 3, 5])
    parser.add_argument("--limit", type=int, default=None, help="questions per run (all 200 when unset)")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shearc.corpus.tasks import TASK, write_task
    from shearc.plan import DownstreamTaskPlan
    from shearc.runtime.downstream import run_tasks

    model_dir = REPO / "specs" / "tiny" / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_task(Path(folder))
        for shots in args.shots:
            tasks = [DownstreamTaskPlan(task=f"shearc_{TASK}", path=f"tasks/{TASK}.yaml", metric=metric,
                                        num_fewshot=shots, data=[f"tasks/{TASK}.jsonl"])
                     for metric in ("acc,none", "acc_norm,none")]
            started = time.perf_counter()
            scored = run_tasks({"source": model}, tokenizer, tasks, Path(folder), limit=args.limit, batch_size=8,
                               device=torch.device("cpu"), seed=0, bos=False)["source"]
            seconds = time.perf_counter() - started
            rows.append(f"| {shots} | " + " | ".join(f"{s['value']:.3f} ± {s['stderr']:.3f}" for s in scored)
                        + f" | {scored[0]['samples']} | {seconds:.1f} |")
    print("| shots | acc | acc_norm | questions | seconds (both metrics) |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
