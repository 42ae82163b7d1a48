"""Two processes on CPU (gloo) under torchrun, data parallel (DDP) or sharded (FSDP2), give the model
one process gives with the same global batch."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from shearc.cli import main

from ...helpers import tiny_project

PRUNE = {"method": "hard-concrete", "steps": 12, "global_batch": 8, "seq_len": 16, "warmup_steps": 2,
         "eval_interval": 4, "lr": 1e-3}
RECOVERY = {"method": "full", "steps": 12, "global_batch": 8, "seq_len": 16, "lr": 1e-3, "warmup_steps": 2,
            "eval_interval": 4}


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_match_one(tmp_path, strategy):
    plan = tiny_project(tmp_path, "mistral-gqa", {
        "target": {"layers": 3, "hidden": 32, "heads": 4, "kv_heads": 1, "intermediate": 96},
        "prune": PRUNE, "recovery": RECOVERY, "mixer": {"method": "drpruning", "reference": "source"},
        "schedule": {"micro_batch": 2}, "runtime": {"devices": 2, "strategy": strategy},
        "export": {"dtype": "float32"}})
    assert main(["run", str(plan), "--out", str(tmp_path / "one")]) == 0
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                             "--standalone", "-m", "shearc.cli", "run", str(plan), "--out",
                             str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one = load_file(tmp_path / "one" / "model" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model" / "model.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    # one writer: a single metrics file, one export record, mixer decisions shared
    records = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["event"] == "export" for r in records) == 1
    single = [r["weights"] for r in map(json.loads, (tmp_path / "one" / "metrics.jsonl").read_text().splitlines())
              if r["event"] == "mixer"]
    double = [r["weights"] for r in records if r["event"] == "mixer"]
    torch.testing.assert_close(torch.tensor(double), torch.tensor(single), rtol=1e-4, atol=1e-6)


def _torchrun(plan, out, **popen):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "shearc.cli", "run", str(plan), "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def test_sharded_runs_checkpoint_and_resume_exactly(tmp_path):
    import os
    import signal
    import time

    plan = tiny_project(tmp_path, "llama-mha", {
        "target": {"layers": 3, "hidden": 32, "heads": 4, "intermediate": 96},
        "prune": PRUNE, "recovery": {**RECOVERY, "steps": 24}, "schedule": {"micro_batch": 2},
        "runtime": {"devices": 2, "strategy": "fsdp2", "checkpoint_interval": 3, "deterministic": True},
        "export": {"dtype": "float32"}})
    clean = _torchrun(plan, tmp_path / "clean")
    assert clean.wait(timeout=300) == 0, clean.stderr.read()[-3000:]
    killed = _torchrun(plan, tmp_path / "run", start_new_session=True)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "run" / "checkpoints").glob("02-recover-*")):
        assert killed.poll() is None and time.monotonic() < deadline, killed.stderr.read()[-3000:]
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # torchrun and both workers
    killed.wait()
    assert not (tmp_path / "run" / "done.json").exists()
    resumed = _torchrun(plan, tmp_path / "run")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    one = load_file(tmp_path / "clean" / "model" / "model.safetensors")
    two = load_file(tmp_path / "run" / "model" / "model.safetensors")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=0, msg=name)
