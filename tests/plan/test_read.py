import json

import pytest

from shearc.cli import main
from shearc.compiler.compile import compile_spec, write_plan

from ..helpers import tiny_spec, write_spec


@pytest.fixture
def plan_path(models):
    path = models / "plan.json"
    write_plan(compile_spec(write_spec(models, tiny_spec("mistral-gqa", target={"kv_heads": 1, "heads": 4})),
                            path), path)
    return path


def test_explain_summarises_a_plan(plan_path, capsys):
    assert main(["explain", str(plan_path)]) == 0
    out = capsys.readouterr().out
    for needle in ("Shape", "Coupled groups", "kv_group", "Stages", "prune", "Data mixture", "2 -> 1"):
        assert needle in out


def test_explain_shows_host_memory_and_a_latency_not_measured(models, capsys):
    """A device too small for the source: its latency is left out of the plan, and explain says so; every stage
    shows its host memory per process."""
    path = models / "plan.json"
    spec = tiny_spec("mistral-gqa", target={"kv_heads": 1, "heads": 4}, eval={"enabled": True, "seq_len": 16},
                     runtime={"device_memory_gib": 0.0004})
    plan = compile_spec(write_spec(models, spec), path)
    write_plan(plan, path)
    assert all(stage.estimate.host_memory_bytes > 0 for stage in plan.stages)
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "host" in out and "no latency measured for the source or the result" in out


def test_explain_names_the_family_adapter(models, capsys):
    path = models / "plan.json"
    write_plan(compile_spec(write_spec(models, tiny_spec("qwen3-qknorm", target={"intermediate": 96})), path), path)
    assert main(["explain", str(path)]) == 0
    assert "family adapter: Qwen3Adapter (compiler/families/qwen3.py)" in capsys.readouterr().out


def test_explain_shows_the_distillation_stage_with_its_teacher_counted(models, capsys):
    steps = {"steps": 2, "global_batch": 4, "seq_len": 16, "warmup_steps": 1, "eval_interval": 1}
    plans = {}
    for method in ("full", "distill"):
        path = models / f"{method}.json"
        write_plan(compile_spec(write_spec(models, tiny_spec("llama-mha", recovery={"method": method, **steps}),
                                           f"{method}.yaml"), path), path)
        plans[method] = json.loads(path.read_text())
    assert main(["explain", str(models / "distill.json")]) == 0
    assert "distill" in capsys.readouterr().out
    full, distill = (next(s for s in plans[m]["stages"] if s["stage"] == "recover")["estimate"] for m in plans)
    assert distill["flops"] > full["flops"] and distill["memory_bytes"]["total"] > full["memory_bytes"]["total"]


def test_explain_shows_reconstruction_with_its_share_of_the_prune_stage(models, capsys):
    plans = {}
    for name, extra in (("selection", {"reconstruct": None}), ("refit", {"reconstruct": {"method": "least-squares",
                                                                       "calibration_samples": 8,
                                                                       "calibration_seq_len": 64}})):
        path = models / f"{name}.json"
        spec = tiny_spec("llama-mha", prune={"method": "taylor", **extra})
        write_plan(compile_spec(write_spec(models, spec, f"{name}.yaml"), path), path)
        plans[name] = json.loads(path.read_text())["stages"][0]
    assert main(["explain", str(models / "refit.json")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "reconstruct after selection: least-squares on 8 windows of 64 tokens (damping 0.01)" in out
    assert "the widest Gram matrix" in out
    selection, refit = plans["selection"], plans["refit"]
    assert selection["reconstruction"] is None
    share = refit["reconstruction"]
    assert share["flops"] > 0 and refit["estimate"]["flops"] == selection["estimate"]["flops"] + share["flops"]
    assert refit["estimate"]["tokens"] == selection["estimate"]["tokens"] + 8 * 64
    assert refit["estimate"]["memory_bytes"]["total"] == max(selection["estimate"]["memory_bytes"]["total"],
                                                             share["memory_bytes"]["total"])


def _rewrite(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["target"]["model_info"].update(params=1), "edited after compile"),
        (lambda d: d.update(plan_version=[1, 0]), "plan_version"),
        (lambda d: d["stages"][0]["params"].pop("norm"), "stages.0.params"),
        (lambda d: d.update(surprise=1), "surprise"),
    ],
)
def test_a_tampered_plan_is_refused(plan_path, capsys, change, needle):
    _rewrite(plan_path, change)
    assert main(["explain", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_not_json(tmp_path, capsys):
    (tmp_path / "plan.json").write_text("{nope")
    assert main(["explain", str(tmp_path / "plan.json")]) == 2
    assert "not a JSON plan" in capsys.readouterr().err
