"""The finalize stage: the dense model written to disk tensor by tensor, checked as it streams from there, and only
then loaded whole, after the source is let go; a run killed inside finalize or export ends, run again, with the
bytes an uninterrupted run writes."""

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from shearc.cli import main
from shearc.runtime import slicing
from shearc.runtime.dense_shards import load_shards
from shearc.runtime.metrics import MetricsLog
from shearc.runtime.stages import finalize
from shearc.runtime.stages.base import RunContext

from ...helpers import off_by_one, tiny_project

TAYLOR = {"target": {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64},
          "prune": {"method": "taylor", "granularities": ["layer", "head", "intermediate", "hidden"],
                    "calibration_samples": 4, "calibration_seq_len": 16, "reconstruct": None},
          "recovery": {"method": "none"}, "export": {"dtype": "float32"}}


def test_the_source_and_a_whole_dense_model_are_never_held_together(tmp_path, monkeypatch):
    plan_path = tiny_project(tmp_path, "llama-tied", TAYLOR)
    seen = {}
    compare, load = finalize.compare_logits, RunContext.dense_from_shards

    def checking(masked, masks, dense, *args, **kwargs):
        seen["streamed"] = all(p.is_meta for p in dense.parameters())
        seen["source held while checking"] = masked is not None
        return compare(masked, masks, dense, *args, **kwargs)

    def loading(self):
        seen["source held while loading"] = self.model is not None
        return load(self)

    monkeypatch.setattr(finalize, "compare_logits", checking)
    monkeypatch.setattr(RunContext, "dense_from_shards", loading)
    assert main(["run", str(plan_path)]) == 0
    assert seen == {"streamed": True, "source held while checking": True, "source held while loading": False}
    run_dir = tmp_path / "runs" / "tiny"
    (export,) = MetricsLog(run_dir / "metrics.jsonl").read("export")
    assert export["logits"]["passed"] and 0 < export["logits"]["rounding_spread"] < export["logits"]["tolerance"]
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "model").state_dict()
    dense = load_shards(run_dir / "dense")  # what finalize wrote is what was exported (fp32 both)
    assert dense.keys() == exported.keys() - {"lm_head.weight"}  # the tied head once
    assert all(torch.equal(tensor, exported[key]) for key, tensor in dense.items())


def test_a_failed_check_keeps_what_it_checked_and_loads_no_dense_model(tmp_path, monkeypatch, capsys):
    plan_path = tiny_project(tmp_path, "llama-tied", TAYLOR)
    kept_units = slicing.kept_units  # the stage's own shape check (its import of it) still sees the truth
    monkeypatch.setattr(slicing, "kept_units", lambda masks, shape: off_by_one(kept_units(masks, shape), shape))
    monkeypatch.setattr(RunContext, "dense_from_shards", lambda self: pytest.fail("loaded after a failed check"))
    assert main(["run", str(plan_path)]) == 1
    assert "differ from the masked model's" in capsys.readouterr().err
    run_dir = tmp_path / "runs" / "tiny"
    assert (run_dir / "dense" / "model.safetensors.index.json").is_file() and (run_dir / "masks.safetensors").is_file()


KILL = """
import os, sys
from shearc.cli import main
from shearc.runtime import dense_shards
from shearc.runtime.stages import export

calls = []
def dying(*args, **kwargs):
    calls.append(1)
    if len(calls) == int(sys.argv[2]):
        os._exit(137)  # as a kill: no cleanup, no exception handlers
    return original(*args, **kwargs)

if sys.argv[1] == "finalize":
    dense_shards.SHARD_BYTES = 4096  # several shards of the tiny model
    original = dense_shards.save_file
    dense_shards.save_file = dying
else:
    original = export.ExportStage._reload_and_check
    export.ExportStage._reload_and_check = lambda self, *a, **k: dying(self, *a, **k)
main(["run", sys.argv[3], "--out", sys.argv[4]])
"""


def _model_bytes(run_dir):
    model = run_dir / "model"
    return {path.name: path.read_bytes() for path in sorted(model.iterdir()) if path.name != "README.md"}


@pytest.mark.parametrize("where, call", [("finalize", 2), ("export", 1)])
def test_a_run_killed_inside_finalize_or_export_finishes_again_with_the_same_bytes(tmp_path, where, call):
    """Killed while the dense shards are half written (after the first) or while the export is in its staging
    directory: the run leaves a hidden staging directory behind; run again, it removes it, resumes from its newest
    checkpoint, and writes the model an uninterrupted run writes (the card, which holds timings, aside)."""
    plan_path = tiny_project(tmp_path, "llama-tied", {**TAYLOR, "target": {**TAYLOR["target"], "layers": 2}})
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["run", str(plan_path), "--out", str(whole)]) == 0
    died = subprocess.run([sys.executable, "-c", KILL, where, str(call), str(plan_path), str(killed)],
                          capture_output=True, text=True)
    assert died.returncode == 137, died.stderr
    staging = ".dense." if where == "finalize" else ".model."
    assert [path for path in killed.iterdir() if path.name.startswith(staging)] and not (killed / "model").exists()
    assert main(["run", str(plan_path), "--out", str(killed)]) == 0
    assert _model_bytes(killed) == _model_bytes(whole)
    assert not [path for path in killed.iterdir() if path.is_dir() and path.name.startswith(".")]
