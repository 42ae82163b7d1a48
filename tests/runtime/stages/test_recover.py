"""Recovery after pruning, full and LoRA, then evaluation: the emitted model is dense and better trained."""

import json

import pytest

from shearc.cli import main
from shearc.registry import Registry
from shearc.runtime import run as run_module
from shearc.runtime.metrics import MetricsLog
from shearc.runtime.stages.recover import RECOVERY_IMPLEMENTATIONS

from ...helpers import tiny_project

RECOVERY = {"steps": 30, "global_batch": 4, "seq_len": 16, "lr": 3e-3, "warmup_steps": 2, "eval_interval": 10}


RECOVERIES = {
    "full": {"method": "full"},
    "lora": {"method": "lora", "rank": 4},
    "distill-full": {"method": "distill", "temperature": 2.0, "lm_weight": 0.5},
    "distill-lora": {"method": "distill", "student": "lora", "rank": 4, "top_k": 8},
}


@pytest.mark.parametrize("method", list(RECOVERIES))
def test_recovery_trains_the_pruned_model_and_the_report_compares_it(tmp_path, method):
    from transformers import AutoModelForCausalLM

    recovery = {**RECOVERIES[method], **RECOVERY}
    plan_path = tiny_project(tmp_path, "mistral-gqa", {
        "target": {"heads": 4, "kv_heads": 1, "intermediate": 96}, "recovery": recovery,
        "eval": {"sequences_per_domain": 4, "seq_len": 16}, "export": {"dtype": "float32"}})
    assert main(["run", str(plan_path)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    steps = [r for r in metrics.read("train") if r["stage"] == "recover"]
    losses = [r["loss"] for r in steps]
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5])  # recovery learned something
    if method.startswith("distill"):  # the objective is the KL (plus its share of the LM loss); both logged
        weight = RECOVERIES[method].get("lm_weight", 0.0)
        assert all(r["loss"] == pytest.approx(r["kl"] + weight * r["lm_loss"], rel=1e-4) for r in steps)
        assert steps[0]["lm_loss"] > 0
        if not weight:  # the KL alone trains (with the LM loss in it, the random teacher is a poor target)
            assert sum(r["kl"] for r in steps[-5:]) < sum(r["kl"] for r in steps[:5])
    report = json.loads((run_dir / "report.json").read_text())
    assert report["domains"] == ["a", "b"]
    plan = json.loads(plan_path.read_text())
    assert report["result"]["params"] == plan["target"]["model_info"]["params"]
    assert report["source"]["params"] == plan["source"]["model_info"]["params"]
    assert all(d["perplexity"] > 1 for d in report["result"]["domains"])
    model_dir = run_dir / "model"
    assert not (model_dir / "adapter_config.json").exists()  # adapters merged: a plain dense model
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert "## Per-domain evaluation" in (model_dir / "README.md").read_text()


def test_activation_checkpointing_gives_the_same_model(tmp_path):
    from safetensors.torch import load_file

    models = {}
    for checkpointing in (False, True):
        root = tmp_path / str(checkpointing)
        plan_path = tiny_project(root, "qwen2-bias", {
            "target": {"heads": 2, "kv_heads": 1, "intermediate": 80},
            "prune": {"method": "hard-concrete", "steps": 6, "global_batch": 4, "seq_len": 16, "warmup_steps": 1,
                      "eval_interval": 3},
            "recovery": {"method": "full", **RECOVERY, "steps": 6, "eval_interval": 3},
            "schedule": {"activation_checkpointing": checkpointing}, "export": {"dtype": "float32"}})
        assert main(["run", str(plan_path)]) == 0
        models[checkpointing] = load_file(root / "runs" / "tiny" / "model" / "model.safetensors")
    for name, tensor in models[False].items():
        assert (models[True][name] - tensor).abs().max() < 1e-5, name


def test_a_mixer_referenced_to_the_source_works_after_one_shot_pruning(tmp_path):
    """Taylor pruning trains nothing, so recovery measures the source's losses for the mixer itself."""
    plan_path = tiny_project(tmp_path, "mistral-gqa", {
        "target": {"heads": 4, "kv_heads": 1, "intermediate": 96}, "prune": {"method": "taylor"},
        "mixer": {"method": "dynamic-batch-loading", "reference": "source"},
        "recovery": {"method": "full", **RECOVERY, "steps": 6, "eval_interval": 3}})
    assert main(["run", str(plan_path)]) == 0
    metrics = MetricsLog(tmp_path / "runs" / "tiny" / "metrics.jsonl")
    [reference] = metrics.read("reference")
    updates = metrics.read("mixer")
    assert len(updates) == 2 and all(u["reference_losses"] == reference["losses"] for u in updates)



def test_a_recovery_method_the_runtime_lacks_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    plan_path = tiny_project(tmp_path, "llama-mha", {"recovery": {"method": "lora", "steps": 2, "global_batch": 4,
                                                                  "seq_len": 16, "warmup_steps": 1,
                                                                  "eval_interval": 1}})
    only_full = Registry("recovery method implementation")
    only_full.register("full")(RECOVERY_IMPLEMENTATIONS.get("full"))
    monkeypatch.setattr(run_module, "RECOVERY_IMPLEMENTATIONS", only_full)
    assert main(["run", str(plan_path)]) == 2
    assert "this shearc cannot run recovery method lora yet" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
