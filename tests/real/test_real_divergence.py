"""A learning rate typed 0.1 for 1e-4 on a real checkpoint: the divergence guard drops the diverged steps' updates and
stops hard-concrete pruning at the third in a row (exit 2, naming the step and the losses) before anything is
finalized or exported."""

from __future__ import annotations

import math

from shearc.cli import main
from shearc.runtime.metrics import MetricsLog

from .test_real_model import compile_real

HARD_CONCRETE = {"method": "hard-concrete", "granularities": ["head", "intermediate"], "steps": 8, "global_batch": 2,
                 "seq_len": 128, "warmup_steps": 1, "eval_interval": 4, "lr": 0.1}


def test_a_learning_rate_a_thousand_times_too_high_stops_before_export(tmp_path, real_model_dir, real_text, capsys,
                                                                       record):
    plan_path = compile_real(tmp_path, real_model_dir, real_text, HARD_CONCRETE, {"method": "none"},
                             target={"heads": 6, "kv_heads": 2, "intermediate": 1024}, evaluation={"enabled": False})
    assert main(["run", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "diverged loss" in err and "prune step" in err and "Traceback" not in err
    run_dir = tmp_path / "runs" / "real"
    events = MetricsLog(run_dir / "metrics.jsonl").read("diverged")
    assert [e["stopped"] for e in events] == [False, False, True]  # three in a row: two dropped, then the stop
    assert all(e["stage"] == "prune" and e["loss"] > e["bound"] for e in events)
    event = events[-1]
    assert event["bound"] == max(event["first_loss"] + 5.0, math.log(49152))  # SmolLM2's vocabulary
    assert not (run_dir / "model").exists() and not (run_dir / "masks.safetensors").exists()
    losses = [e["loss"] for e in MetricsLog(run_dir / "metrics.jsonl").read("train")]
    record("real-divergence-lr-0.1", {"losses": [round(loss, 2) for loss in losses],
                                      "diverged_losses": [round(e["loss"], 2) for e in events],
                                      "bound": round(event["bound"], 2), "stopped_at_step": event["step"]})
