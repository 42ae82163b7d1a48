"""lm-eval tasks in the evaluate stage: a local generated task on a tiny model, source and result, offline."""

import json

import pytest

from shearc.cli import main
from shearc.corpus.tasks import write_task

from ..helpers import tiny_project



def test_a_local_task_scores_source_and_result_into_the_report(tmp_path, capsys):
    write_task(tmp_path, count=12, seed=0)
    plan_path = tiny_project(tmp_path, "llama-mha", {
        "target": {"heads": 4, "intermediate": 96}, "prune": {"method": "magnitude"},
        "eval": {"sequences_per_domain": 2, "seq_len": 16,
                 "lm_eval": {"tasks": [{"path": "tasks/arithmetic_choice.yaml", "metric": "acc", "num_fewshot": 2}],
                             "limit": 8, "batch_size": 4}},
        "export": {"dtype": "float32"}})
    plan = json.loads(plan_path.read_text())
    (evaluate,) = [s for s in plan["stages"] if s["stage"] == "evaluate"]
    assert evaluate["downstream"] == [{"task": "shearc_arithmetic_choice", "path": "tasks/arithmetic_choice.yaml",
                                       "metric": "acc,none", "num_fewshot": 2,
                                       "data": ["tasks/arithmetic_choice.jsonl"]}]
    assert main(["explain", str(plan_path)]) == 0
    assert "Downstream tasks" in capsys.readouterr().out
    assert main(["run", str(plan_path)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    downstream = json.loads((run_dir / "report.json").read_text())["downstream"]
    assert downstream["lm_eval_version"].startswith("0.4.") and downstream["limit"] == 8
    (task,) = downstream["tasks"]
    assert (task["task"], task["metric"], task["num_fewshot"]) == ("shearc_arithmetic_choice", "acc,none", 2)
    for which in ("source", "result"):
        scored = task[which]
        assert scored["samples"] == 8 and scored["value"] * 8 in range(9)  # a fraction of 8 questions
        assert scored["stderr"] is not None and scored["stderr"] >= 0
    card = (run_dir / "model" / "README.md").read_text()
    assert "## Downstream tasks (lm-eval 0.4." in card and "| shearc_arithmetic_choice | acc,none | 2 |" in card
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "downstream tasks (lm-eval" in out and "shearc_arithmetic_choice" in out and "acc,none" in out
    assert (run_dir / "report" / "downstream.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", str(run_dir)]) == 0
    assert "shearc_arithmetic_choice acc (2-shot)" in capsys.readouterr().out
