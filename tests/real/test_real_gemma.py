"""The real-model tier on a second family: Gemma 3 270M's real weights, end to end.

What Gemma has that the Llama checkpoint lacks: a tokenizer that puts BOS in front of every text
(the model reads mid-document windows without it about 1.7 nats worse), the embedding scaled by
sqrt(hidden) inside the model, five sliding-window layers to every full one, (1 + w) norms, per-head
q/k norms, one KV head of width 256 and a 262,144-token vocabulary. Each run goes from compile to a
reloaded export through the finalize check, on settings cut short for two CPU cores.
"""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from shearc.cli import main
from shearc.runtime.metrics import MetricsLog

from .plain import plain_losses
from .test_real_model import EVAL_FRACTION, PLAIN_TOLERANCE, RECONSTRUCT, SEED, agrees_beyond_rounding, compile_real

EVAL = {"sequences_per_domain": 4, "seq_len": 128}
SHORT = {"steps": 2, "global_batch": 2, "seq_len": 128, "warmup_steps": 1, "eval_interval": 2}
RUNS = {
    # LLM-Pruner's method at head and intermediate granularity, refit after selection, recovered with LoRA
    "taylor": {"target": {"heads": 2, "intermediate": 1024},
               "prune": {"method": "taylor", "granularities": ["head", "intermediate"], "calibration_samples": 4,
                         "calibration_seq_len": 128, "reconstruct": RECONSTRUCT},
               "recovery": {"method": "lora", "lr": 1e-4, **SHORT}, "evaluation": EVAL},
    # Minitron's: the hidden size (Gemma's embedding scale) and whole layers (the sliding/full pattern)
    "activation": {"target": {"layers": 12, "hidden": 512},
                   "prune": {"method": "activation", "granularities": ["layer", "hidden"], "calibration_samples": 4,
                             "calibration_seq_len": 128},
                   "recovery": {"method": "none"}, "evaluation": {"enabled": False}},
    # Sheared-LLaMA's: masks learned with the weights for a few steps, then cut to the target (whole KV groups
    # only, and Gemma 3 270M has one: hidden and intermediate here), the down projections refit
    "hard-concrete": {"target": {"hidden": 512, "intermediate": 1024},
                      "prune": {"method": "hard-concrete", "granularities": ["hidden", "intermediate"], **SHORT,
                                "lr": 1e-5, "reconstruct": RECONSTRUCT},
                      "recovery": {"method": "none"}, "evaluation": {"sequences_per_domain": 2, "seq_len": 128}},
}
SOURCE_LOSS_CEILING = 4.5  # nats; read without BOS the same windows cost 4.4 to 6.3, a uniform guess 12.5


@pytest.mark.parametrize("method", list(RUNS))
def test_a_real_gemma_goes_from_compile_to_a_reloaded_export(tmp_path, gemma_model_dir, real_text, record, method):
    from transformers import AutoModelForCausalLM

    run = RUNS[method]
    plan_path = compile_real(tmp_path, gemma_model_dir, real_text, run["prune"], run["recovery"],
                             target=run["target"], evaluation=run["evaluation"])
    plan = json.loads(plan_path.read_text())
    assert plan["data"]["window_bos"] == 2 and plan["data"]["window_bos_origin"] == "tokenizer"
    started = time.perf_counter()
    assert main(["run", str(plan_path)]) == 0
    seconds = time.perf_counter() - started
    run_dir = tmp_path / "runs" / "real"
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    assert sum(p.numel() for p in exported.parameters()) == plan["target"]["model_info"]["params"]
    source_config = json.loads((gemma_model_dir / "config.json").read_text())
    kept = json.loads((run_dir / "model" / "config.json").read_text())
    if "layers" in run["target"]:  # each kept layer keeps its own attention type
        assert kept["num_hidden_layers"] == 12 and len(kept["layer_types"]) == 12
        assert set(kept["layer_types"]) <= set(source_config["layer_types"])
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    (check,) = metrics.read("finalize")
    assert check["passed"] and agrees_beyond_rounding(check), check
    stages = {s["stage"]: s["seconds"] for s in metrics.read("stage")}
    measured = {"seconds": round(seconds, 1), "stage_seconds": stages, "top1_agreement": check["top1_agreement"],
                "max_logit_difference": check["max_difference"], "tolerance": check["tolerance"]}
    if "reconstruct" in run["prune"]:  # the check above compared the sliced model with the refit masked one
        (refit,) = metrics.read("reconstruct")
        assert 0 < refit["error_after"] < refit["error_before"]
        measured["layer_error_ratio"] = round(refit["error_after"] / refit["error_before"], 4)
    if run["evaluation"].get("enabled", True):
        report = json.loads((run_dir / "report.json").read_text())
        before = [d["loss"] for d in report["source"]["domains"]]
        after = [d["loss"] for d in report["result"]["domains"]]
        assert all(math.isfinite(loss) for loss in after)
        assert max(before) < SOURCE_LOSS_CEILING
        plain = plain_losses(gemma_model_dir, real_text, eval_fraction=EVAL_FRACTION, seed=SEED,
                             length=run["evaluation"]["seq_len"], count=run["evaluation"]["sequences_per_domain"],
                             precision=json.loads((run_dir / "plan.json").read_text())["precision"]["cpu"])
        assert before == pytest.approx([plain[name] for name in report["domains"]], abs=PLAIN_TOLERANCE)
        measured.update(domains=report["domains"], loss_before=[round(x, 4) for x in before],
                        loss_after=[round(x, 4) for x in after], plain_source_loss=plain)
    record(f"real-gemma-{method}", measured)


def test_the_check_sees_a_kept_layer_given_the_wrong_attention_type(gemma_model_dir, real_text, record):
    """Layers cut from Gemma's sliding/full pattern, checked on a window longer than the sliding window (512):
    the kept layers' own types pass; the dense model with one sliding layer made full fails."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shearc.compiler.families import ADAPTERS, follow_kept_layers
    from shearc.runtime import slicing
    from shearc.runtime.logits_check import compare_logits
    from shearc.runtime.models import build_dense

    model = AutoModelForCausalLM.from_pretrained(gemma_model_dir, dtype=torch.float32).eval()
    adapter = ADAPTERS.get("Gemma3ForCausalLM")
    shape = adapter.shape_of(model.config)
    config = json.loads((gemma_model_dir / "config.json").read_text())
    dropped = [0, 3, 7, 9, 13, 16]  # sliding layers all; the full ones (5, 11, 17) stay, now at 3, 7, 11
    masks = {"layer": torch.ones(shape.layers)}
    masks["layer"][dropped] = 0
    tokenizer = AutoTokenizer.from_pretrained(gemma_model_dir)
    text = "\n".join(json.loads(line)["text"] for line in real_text["code"].read_text().splitlines()[:40])
    window = tokenizer(text, return_tensors="pt").input_ids[0, :640]  # BOS first, as the tokenizer begins it
    assert len(window) == 640 and window[0] == tokenizer.bos_token_id

    state, target = slicing.finalize_state(model.state_dict(), adapter, masks, shape, tied=True)
    kept_config = follow_kept_layers(adapter.config_for(config, target), config,
                                     [n for n in range(shape.layers) if n not in dropped])
    right = compare_logits(model, masks, build_dense(kept_config, state, adapter), adapter, [window], seed=0)
    wrong_config = {**kept_config, "layer_types": [*kept_config["layer_types"]]}
    first_sliding = wrong_config["layer_types"].index("sliding_attention")
    wrong_config["layer_types"][first_sliding] = "full_attention"
    wrong = compare_logits(model, masks, build_dense(wrong_config, state, adapter), adapter, [window], seed=0)
    assert kept_config["layer_types"].count("full_attention") == 3
    assert right.passed and right.top1_agreement == 1.0
    assert not wrong.passed and wrong.max_difference > 10 * wrong.tolerance
    record("real-gemma-layer-types", {"right": right.as_dict(), "wrong": wrong.as_dict()})
