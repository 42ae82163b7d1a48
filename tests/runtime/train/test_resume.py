"""Killed runs resume exactly: SIGKILL during pruning or recovery, run again, same weights as without the kill."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from shearc.cli import main

from ...helpers import tiny_project

PRUNE = {"method": "hard-concrete", "steps": 40, "global_batch": 4, "seq_len": 16, "warmup_steps": 4,
         "eval_interval": 10, "lr": 1e-3}
RECOVERY = {"method": "lora", "rank": 4, "steps": 40, "global_batch": 4, "seq_len": 16, "lr": 1e-3, "warmup_steps": 4,
            "eval_interval": 10}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One plan, and the weights an uninterrupted run of it emits."""
    root = tmp_path_factory.mktemp("resume")
    plan = tiny_project(root, "llama-mha", {
        "target": {"layers": 3, "hidden": 32, "heads": 4, "intermediate": 96}, "prune": PRUNE, "recovery": RECOVERY,
        "mixer": {"method": "drpruning", "reference": "source", "fit_min_points": 3},
        "runtime": {"checkpoint_interval": 4, "keep_checkpoints": 2, "deterministic": True},
        "export": {"dtype": "float32"}})
    assert main(["run", str(plan), "--out", str(root / "clean")]) == 0
    return plan, load_file(root / "clean" / "model" / "model.safetensors")


def _start(plan, out):
    return subprocess.Popen([sys.executable, "-m", "shearc.cli", "run", str(plan), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for(path_glob, out, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((out / "checkpoints").glob(path_glob)):
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended before a {path_glob} checkpoint: {process.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"no {path_glob} checkpoint within {timeout} s")


@pytest.mark.parametrize("stage", ["00-prune-*", "02-recover-*"], ids=["during-pruning", "during-recovery"])
def test_sigkill_then_resume_gives_identical_weights(project, tmp_path, stage):
    plan, clean = project
    out = tmp_path / "run"
    process = _start(plan, out)
    _wait_for(stage, out, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "done.json").exists()
    assert main(["run", str(plan), "--out", str(out)]) == 0
    resumed = load_file(out / "model" / "model.safetensors")
    assert resumed.keys() == clean.keys()
    assert all((resumed[k] == clean[k]).all() for k in clean), "resumed weights differ from the uninterrupted run"
    events = [json.loads(line)["event"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "resume" in events
    assert len(list((out / "checkpoints").glob("[!.]*"))) <= 2  # keep_checkpoints


def test_sigterm_checkpoints_and_exits_130(project, tmp_path):
    plan, _ = project
    out = tmp_path / "run"
    process = _start(plan, out)
    _wait_for("00-prune-*", out, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert "run the plan again to resume" in process.stderr.read()
    assert list((out / "checkpoints").glob("[!.]*"))


def test_a_checkpoint_of_another_plan_is_refused(project, tmp_path, capsys):
    plan, _ = project
    out = tmp_path / "run"
    foreign = out / "checkpoints" / "00-prune-00000004"
    foreign.mkdir(parents=True)
    (foreign / "meta.json").write_text(json.dumps({"plan_sha256": "0" * 64, "stage": "prune", "stage_index": 0,
                                                  "step": 4, "complete": False, "checks": {}}))
    assert main(["run", str(plan), "--out", str(out)]) == 2
    assert "written by another plan" in capsys.readouterr().err
    assert os.listdir(out) == ["checkpoints"]  # nothing else touched
