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
    assert "shearc_arithmetic_choice acc (2-shot, 8 examples)" in capsys.readouterr().out


def test_a_task_listed_with_two_metrics_is_evaluated_once_and_reports_both(tmp_path, monkeypatch):
    """HellaSwag's acc and acc_norm side by side: one lm-eval pass per model, each entry its own metric."""
    import lm_eval
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shearc.plan import DownstreamTaskPlan
    from shearc.runtime.downstream import run_tasks

    from ..helpers import SPECS

    write_task(tmp_path, count=12, seed=0)
    calls = []
    evaluate = lm_eval.simple_evaluate
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda **kw: calls.append(kw["tasks"]) or evaluate(**kw))
    tasks = [DownstreamTaskPlan(task="shearc_arithmetic_choice", path="tasks/arithmetic_choice.yaml", metric=metric,
                                num_fewshot=1, data=["tasks/arithmetic_choice.jsonl"])
             for metric in ("acc,none", "acc_norm,none")]
    model_dir = SPECS / "tiny" / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    scored = run_tasks({"source": model}, AutoTokenizer.from_pretrained(model_dir), tasks, tmp_path, limit=None,
                       batch_size=4, device=torch.device("cpu"), seed=0, bos=False)["source"]
    assert len(calls) == 1 and len(calls[0]) == 1  # one pass, the task once
    assert [s["samples"] for s in scored] == [12, 12]
    assert all(s["value"] * 12 == pytest.approx(round(s["value"] * 12)) for s in scored)  # fractions of 12
    alone = run_tasks({"source": model}, AutoTokenizer.from_pretrained(model_dir), tasks[1:], tmp_path, limit=None,
                      batch_size=4, device=torch.device("cpu"), seed=0, bos=False)["source"]
    assert alone == scored[1:]  # acc_norm read from the shared pass is acc_norm's own
