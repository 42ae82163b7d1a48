"""`shearc run` end to end on tiny models saved to local directories: prune, finalize, export, reload."""

import json
import subprocess
import sys

import pytest
import torch

from shearc.cli import main
from shearc.runtime.metrics import MetricsLog

from ..helpers import off_by_one, tiny_project

HARD_CONCRETE = {"method": "hard-concrete", "steps": 12, "global_batch": 4, "seq_len": 16, "warmup_steps": 2,
                 "eval_interval": 4}
EVERY_GRANULARITY = ["layer", "head", "intermediate", "hidden"]
METHODS = {
    "hard-concrete": HARD_CONCRETE,
    "taylor": {"method": "taylor", "granularities": EVERY_GRANULARITY, "calibration_samples": 4,
               "calibration_seq_len": 16, "iterations": 2},
    "magnitude": {"method": "magnitude", "granularities": EVERY_GRANULARITY},
    "activation": {"method": "activation", "granularities": EVERY_GRANULARITY, "calibration_samples": 4,
                   "calibration_seq_len": 16},
}
# Every granularity shrinks; GQA models lose KV groups (hard-concrete prunes whole groups).
TARGETS = {
    "llama-mha": {"layers": 3, "hidden": 32, "heads": 4, "intermediate": 96},
    "mistral-gqa": {"layers": 3, "hidden": 32, "heads": 4, "kv_heads": 1, "intermediate": 96},
    "qwen2-bias": {"layers": 2, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 80},
    "qwen3-qknorm": {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 1, "intermediate": 80},
    "gemma2": {"layers": 3, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 80},
    "gemma3": {"layers": 3, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 80},
    "phi3-fused": {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 1, "intermediate": 80},
    "llama31-rope": {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 1, "intermediate": 80},
}
# Selection alone (the default refits after scoring; the "+reconstruct" cases below and tests/embedded run it)
CASES = {f"{method}-{model}": (model, {"target": target, "prune": {**METHODS[method], "reconstruct": None},
                                       "schedule": {"micro_batch": 2},
                                       "export": {"dtype": "float32" if model == "qwen2-bias" else "bfloat16"}})
         for method in METHODS for model, target in TARGETS.items()}
# Reconstruction after selection: every family once and every method twice, the methods taking turns.
RECONSTRUCT = {"method": "least-squares", "calibration_samples": 4, "calibration_seq_len": 16}
for _number, (_model, _target) in enumerate(TARGETS.items()):
    _method = list(METHODS)[_number % len(METHODS)]
    CASES[f"{_method}+reconstruct-{_model}"] = (_model, {
        "target": _target, "prune": {**METHODS[_method], "reconstruct": RECONSTRUCT}, "schedule": {"micro_batch": 2},
        "export": {"dtype": "bfloat16"}})


@pytest.mark.parametrize("case", list(CASES))
def test_run_emits_a_dense_model_that_transformers_loads(tmp_path, capsys, case):
    from transformers import AutoModelForCausalLM

    name, changes = CASES[case]
    plan_path = tiny_project(tmp_path, name, changes)
    plan = json.loads(plan_path.read_text())
    assert main(["run", str(plan_path)]) == 0
    model_dir = tmp_path / "runs" / "tiny" / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert sum(p.numel() for p in model.parameters()) == plan["target"]["model_info"]["params"]
    assert model.config.num_attention_heads == plan["target"]["model_info"]["shape"]["heads"]
    assert (model_dir / "tokenizer.json").read_text() == (tmp_path / "tokenizer" / "tokenizer.json").read_text()
    assert json.loads((model_dir / "plan.json").read_text())["plan_sha256"] == plan["plan_sha256"]
    assert "tags: [shearc, pruning]" in (model_dir / "README.md").read_text()
    (export,) = MetricsLog(tmp_path / "runs" / "tiny" / "metrics.jsonl").read("export")
    logits = export["logits"]
    assert logits["passed"] and logits["max_difference"] < 1e-4 and logits["top1_agreement"] == 1.0
    assert 0 < logits["rounding_spread"] < logits["tolerance"] and logits["kl"] < 1e-9
    # the masked checkpoint stays: masks, and the weights pruning trained or refit
    assert (tmp_path / "runs" / "tiny" / "masks.safetensors").is_file()
    reconstructed = "+reconstruct" in case
    assert (tmp_path / "runs" / "tiny" / "masked" / "config.json").is_file() == (
        case.startswith("hard-concrete") or reconstructed)
    refits = MetricsLog(tmp_path / "runs" / "tiny" / "metrics.jsonl").read("reconstruct")
    assert len(refits) == reconstructed
    if reconstructed:  # the finalize check above compared the sliced model with the refit masked one
        assert refits[0]["projections"] > 0 and refits[0]["error_after"] < refits[0]["error_before"]
    # a finished run is not redone
    assert main(["run", str(plan_path)]) == 0
    assert "already holds this finished run" in capsys.readouterr().err


def test_a_plan_for_another_model_is_refused_before_any_work(tmp_path, capsys):
    plan_path = tiny_project(tmp_path, "qwen2-bias", {})
    config_path = tmp_path / "qwen2-bias" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(rms_norm_eps=1e-3, intermediate_size=128)
    config_path.write_text(json.dumps(config))
    assert main(["run", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "rms_norm_eps" in err and "intermediate_size" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_plan_for_another_number_of_processes_is_refused_before_any_work(tmp_path, capsys):
    plan_path = tiny_project(tmp_path, "llama-mha", {"runtime": {"devices": 2}})
    assert main(["run", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "runtime.devices: the plan was compiled for 2 process(es), but 1 started" in err
    assert "torchrun --nproc-per-node 2 -m shearc.cli run" in err
    assert not (tmp_path / "runs").exists()


def test_a_plan_needing_lm_eval_where_it_is_not_installed_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    from shearc.corpus.tasks import write_task
    from shearc.runtime import run as run_module

    write_task(tmp_path, count=4)
    plan_path = tiny_project(tmp_path, "llama-mha", {"eval": {"lm_eval": {"tasks": [
        {"path": "tasks/arithmetic_choice.yaml", "metric": "acc"}]}}})
    monkeypatch.setattr(run_module, "lm_eval_available", lambda: False)
    assert main(["run", str(plan_path)]) == 2
    assert 'eval.lm_eval needs lm-eval, the eval extra: pip install -e ".[eval]"' in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_failed_check_keeps_the_masks_says_what_to_do_and_a_rerun_finishes_without_pruning_again(
        tmp_path, capsys, monkeypatch):
    from shearc.runtime import slicing

    plan_path = tiny_project(tmp_path, "qwen2-bias", {"prune": METHODS["taylor"]})
    correct = slicing.kept_units
    monkeypatch.setattr(slicing, "kept_units", lambda masks, shape: off_by_one(correct(masks, shape), shape))
    assert main(["run", str(plan_path)]) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "check failed: the sliced model's logits differ" in err and "Traceback" not in err
    assert "--finalize-tolerance" in err and "without pruning again" in err
    run_dir = tmp_path / "runs" / "tiny"
    assert not (run_dir / "model").exists() and not (run_dir / "done.json").exists()
    assert (run_dir / "masks.safetensors").is_file() and (run_dir / "finalize_check.json").is_file()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".model.")]
    assert main(["run", str(plan_path)]) == 0
    assert "resuming from 00-prune-00000000 (prune, step 0, complete)" in capsys.readouterr().err
    assert len(MetricsLog(run_dir / "metrics.jsonl").read("prune")) == 1  # scored once, not again
    assert (run_dir / "model" / "config.json").is_file()


def test_a_bad_export_is_never_published(tmp_path, monkeypatch, capsys):
    from shearc.runtime.stages import export

    plan_path = tiny_project(tmp_path, "llama-mha", {})
    monkeypatch.setattr(export, "_DTYPES", {**export._DTYPES, "bfloat16": torch.float16})  # saved != checked
    original = export.ExportStage._reload_and_check

    def checked_as_bfloat16(self, *args):
        monkeypatch.setattr(export, "_DTYPES", {**export._DTYPES, "bfloat16": torch.bfloat16})
        return original(self, *args)

    monkeypatch.setattr(export.ExportStage, "_reload_and_check", checked_as_bfloat16)
    assert main(["run", str(plan_path)]) == 1
    assert "differs from the dense model's" in capsys.readouterr().err
    run_dir = tmp_path / "runs" / "tiny"
    assert not (run_dir / "model").exists() and not [p for p in run_dir.iterdir() if p.name.startswith(".model.")]


def test_the_runtime_never_loads_the_spec_models():
    """docs/DESIGN.md: the runtime reads only the plan. A fresh process imports the runtime's entry point and
    lists the spec (and compile) modules that came with it: none may."""
    code = ("import sys, shearc.runtime.run; assert 'shearc.plan' in sys.modules and 'shearc.sections' in sys.modules; "
            "print(*sorted(m for m in sys.modules if m.startswith(('shearc.compiler.spec', 'shearc.compiler.compile', "
            "'shearc.compiler.load', 'shearc.compiler.estimates'))))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert found == []


def test_a_mixer_the_runtime_lacks_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    from shearc.registry import Registry
    from shearc.runtime import run as run_module

    plan_path = tiny_project(tmp_path, "llama-mha", {"mixer": {"method": "dynamic-batch-loading",
                                                               "reference": "source"}})
    monkeypatch.setattr(run_module, "MIXER_IMPLEMENTATIONS", Registry("mixer implementation"))
    assert main(["run", str(plan_path)]) == 2
    assert "this shearc cannot run mixer dynamic-batch-loading yet" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_layer_pruning_keeps_each_kept_layers_attention_type(tmp_path, monkeypatch):
    """Qwen2 with sliding windows from layer 2 on (full, full, sliding, sliding), its layers 1 and 3 made the
    largest so magnitude keeps them: the result's layers are (full, sliding), not the first two's types, and the
    finalize check (masked against sliced logits over windows longer than the sliding window) passes."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from ..helpers import TINY_CONFIGS

    monkeypatch.setitem(TINY_CONFIGS, "qwen2-sliding", {
        **TINY_CONFIGS["qwen2-bias"], "num_hidden_layers": 4, "use_sliding_window": True, "sliding_window": 4,
        "max_window_layers": 2})
    plan_path = tiny_project(tmp_path, "qwen2-sliding", {
        "target": {"layers": 2}, "prune": {"method": "magnitude", "granularities": ["layer"]},
        "schedule": {"micro_batch": 2}, "export": {"dtype": "float32"}})
    source_dir = tmp_path / "qwen2-sliding"
    source = AutoModelForCausalLM.from_pretrained(source_dir)
    with torch.no_grad():
        for layer in (1, 3):
            for param in source.model.layers[layer].parameters():
                param.mul_(4.0)
    source.save_pretrained(source_dir)
    assert main(["run", str(plan_path)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    assert load_file(run_dir / "masks.safetensors")["layer"].tolist() == [0.0, 1.0, 0.0, 1.0]
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["layer_types"] == ["full_attention", "sliding_attention"] and config["max_window_layers"] == 1
    (finalize,) = MetricsLog(run_dir / "metrics.jsonl").read("finalize")
    assert finalize["passed"] and finalize["max_difference"] < 1e-4
