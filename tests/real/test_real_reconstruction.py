"""Reconstruction after selection on both real checkpoints, with every prune method: here the three runs the rest of
the tier lacks (SmolLM2 with hard-concrete, Gemma 3 with magnitude and activation at head and intermediate
granularity); test_real_model.py refits after magnitude, activation and taylor (the killed run), test_real_gemma.py
after taylor and hard-concrete.

Each run refits the projections that read pruned heads or intermediate channels on real calibration windows, then
goes through the finalize check (the sliced model against the masked model with the refit weights, on real eval
text at real depth) and a reloaded export. Settings are cut short for two CPU cores; how much reconstruction
gains is measured by bench/bench_reconstruction.py, not here.
"""

from __future__ import annotations

import json

import pytest

from shearc.cli import main
from shearc.runtime.metrics import MetricsLog

from .test_real_model import RECONSTRUCT, agrees_beyond_rounding, compile_real

SCORED = {"calibration_samples": 4, "calibration_seq_len": 128}
SHORT = {"steps": 2, "global_batch": 2, "seq_len": 128, "warmup_steps": 1, "eval_interval": 2, "lr": 1e-5}
UNITS = ["head", "intermediate"]
PRUNE = {
    "magnitude": {"method": "magnitude", "granularities": UNITS},
    "activation": {"method": "activation", "granularities": UNITS, **SCORED},
    "hard-concrete": {"method": "hard-concrete", "granularities": UNITS, **SHORT},
}
# SmolLM2: whole KV groups (9 query heads over 3); Gemma 3: query heads inside its one KV group.
TARGETS = {"smollm2": {"heads": 6, "kv_heads": 2, "intermediate": 1024},
           "gemma3": {"heads": 2, "intermediate": 1024}}
CASES = [("smollm2", "hard-concrete"), ("gemma3", "magnitude"), ("gemma3", "activation")]


@pytest.mark.parametrize(("model", "method"), CASES)
def test_a_real_model_refit_after_selection_passes_the_finalize_check(tmp_path, request, real_text, record, model,
                                                                      method):
    from transformers import AutoModelForCausalLM

    model_dir = request.getfixturevalue("real_model_dir" if model == "smollm2" else "gemma_model_dir")
    target = TARGETS[model]
    plan_path = compile_real(tmp_path, model_dir, real_text, {**PRUNE[method], "reconstruct": RECONSTRUCT},
                             {"method": "none"}, target=target, evaluation={"enabled": False})
    plan = json.loads(plan_path.read_text())
    assert main(["run", str(plan_path)]) == 0
    run_dir = tmp_path / "runs" / "real"
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    (refit,) = metrics.read("reconstruct")
    layers = plan["source"]["model_info"]["shape"]["layers"]
    assert refit["projections"] == layers * (2 if "heads" in target else 1)
    assert refit["error_after"] < refit["error_before"]
    (check,) = metrics.read("finalize")
    assert check["passed"] and agrees_beyond_rounding(check), check
    assert (run_dir / "masked" / "config.json").is_file()  # the refit masked model the check compared against
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    assert sum(p.numel() for p in exported.parameters()) == plan["target"]["model_info"]["params"]
    stages = {s["stage"]: s["seconds"] for s in metrics.read("stage")}
    record(f"real-reconstruct-{model}-{method}", {
        "layer_error_ratio": round(refit["error_after"] / refit["error_before"], 4), "stage_seconds": stages,
        "max_logit_difference": check["max_difference"], "tolerance": check["tolerance"],
        "top1_agreement": check["top1_agreement"]})
