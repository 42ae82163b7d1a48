"""`runtime.compile: true`: the training stages run their decoder blocks compiled, with the masks' hooks and LoRA
in place, without graph breaks from shearc's code, and train as the eager run does (to the reordering of fp32
sums a compiler may do)."""

import re

import pytest
import torch
from safetensors.torch import load_file

from shearc.cli import main
from shearc.runtime.metrics import MetricsLog

from ...helpers import tiny_project

STEPS = {"steps": 3, "global_batch": 4, "seq_len": 16, "warmup_steps": 1, "eval_interval": 3, "lr": 1e-3}


# LoRA without dropout: compiled code draws its random numbers by another generator than eager code
@pytest.mark.parametrize("recovery", [{"method": "full"}, {"method": "lora", "rank": 4, "dropout": 0.0}])
def test_compiled_stages_train_as_eager_ones_do(tmp_path, capsys, recovery):
    spec = {"target": {"layers": 4, "hidden": 48, "heads": 4, "intermediate": 96},
            "prune": {"method": "hard-concrete", **STEPS}, "recovery": {**recovery, **STEPS},
            "export": {"dtype": "float32"}}
    weights, events, printed = {}, {}, {}
    for compiled in (False, True):
        root = tmp_path / f"compiled-{compiled}"
        root.mkdir()
        plan = tiny_project(root, "llama-mha", {**spec, "runtime": {"compile": compiled}})
        assert main(["run", str(plan), "--out", str(root / "run")]) == 0
        weights[compiled] = load_file(root / "run" / "model" / "model.safetensors")
        events[compiled] = MetricsLog(root / "run" / "metrics.jsonl").read("compile")
        printed[compiled] = re.findall(r"stage (\w+) done in [\d.]+ s \(compiling [\d.]+ s: \d+ graph\(s\), 0 graph "
                                       r"break\(s\)\)", capsys.readouterr().err)
    assert events[False] == [] and printed[False] == []
    assert printed[True] == ["prune", "recover"]  # the stage's line says what compiling it cost
    assert [e["stage"] for e in events[True]] == ["prune", "recover"]
    for event in events[True]:
        assert event["graphs"] >= 1 and event["graph_breaks"] == 0 and event["compile_seconds"] > 0, event
    for name, tensor in weights[False].items():
        torch.testing.assert_close(weights[True][name], tensor, rtol=1e-3, atol=1e-4, msg=name)
