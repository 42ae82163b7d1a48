"""Two processes on CPU (gloo) under torchrun, data parallel (DDP) or sharded (FSDP2), give the model
one process gives with the same global batch."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from shearc.cli import main
from shearc.plan import read_plan
from shearc.runtime.mixers import Observation, StageInfo, build_mixer

from ...helpers import tiny_project

PRUNE = {"method": "hard-concrete", "steps": 12, "global_batch": 8, "seq_len": 16, "warmup_steps": 2,
         "eval_interval": 4, "lr": 1e-3}
RECOVERY = {"method": "full", "steps": 12, "global_batch": 8, "seq_len": 16, "lr": 1e-3, "warmup_steps": 2,
            "eval_interval": 4}


ACTIVATION = {"method": "activation", "granularities": ["layer", "head", "intermediate", "hidden"],
              "calibration_samples": 8, "calibration_seq_len": 16}


RECONSTRUCTED = {**PRUNE, "reconstruct": {"method": "least-squares", "calibration_samples": 16,
                                          "calibration_seq_len": 16}}


@pytest.mark.parametrize(("strategy", "prune", "recovery"), [("ddp", PRUNE, "full"), ("fsdp2", PRUNE, "full"),
                                                             ("fsdp2", ACTIVATION, "distill"),
                                                             ("fsdp2", RECONSTRUCTED, "full")],
                         ids=["ddp", "fsdp2", "fsdp2-minitron", "fsdp2-reconstructed"])
def test_two_processes_match_one(tmp_path, strategy, prune, recovery):
    """Minitron's recipe under FSDP2: every process scores the same calibration windows; the student and the
    teacher are both sharded."""
    def project(devices):  # the same model, data and recipe; only runtime.devices differs
        return tiny_project(tmp_path / f"devices-{devices}", "mistral-gqa", {
            "target": {"layers": 3, "hidden": 32, "heads": 4, "kv_heads": 1, "intermediate": 96},
            "prune": prune, "recovery": {**RECOVERY, "method": recovery},
            "mixer": {"method": "drpruning", "reference": "source"},
            "schedule": {"micro_batch": 2}, "runtime": {"devices": devices, "strategy": strategy},
            "export": {"dtype": "float32"}})

    assert main(["run", str(project(1)), "--out", str(tmp_path / "one")]) == 0
    plan = project(2)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                             "--standalone", "-m", "shearc.cli", "run", str(plan), "--out",
                             str(tmp_path / "two")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one = load_file(tmp_path / "one" / "model" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model" / "model.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    # one writer: a single metrics file, one export record
    single, double = (_records(tmp_path / run) for run in ("one", "two"))
    assert sum(r["event"] == "export" for r in double) == 1
    if strategy == "fsdp2":  # the source hard-concrete trains, and the dense model recovery trains in full, are read
        for model in ("source", "recovered") if prune is not ACTIVATION else ("recovered",):  # sharded, from files
            (whole,), (half,) = ([r for r in records if r["event"] == "held" and r["model"] == model]
                                 for records in (single, double))
            assert whole["held_per_process"] == whole["params"] == half["params"], model
            assert half["processes"] == 2 and half["held_per_process"] <= half["params"] // 2 + 1_000, model
    if recovery == "distill":  # one process holds the whole teacher; two hold half each (FSDP2 rounds shards up)
        (whole,), (half,) = ([r for r in records if r["event"] == "teacher"] for records in (single, double))
        assert whole["held_per_process"] == whole["params"] == half["params"]
        assert half["processes"] == 2 and half["held_per_process"] <= half["params"] // 2 + 1_000
    _assert_same_mixer_decisions(read_plan(plan), single, double)


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_mixer_decisions(plan, single, double):
    """DRPruning's weights come from a DRO solve over per-domain eval losses. Two processes reach losses
    that differ from one process's in the last bits: their gradients and eval sums are reduced in another
    order, in fp32. The solve stops its bisection once chi2(q, p_R) is within 1e-4 of rho (as the reference
    does), so where that stop lands, and with it q, can move far more than the losses did (3e-5 in weight
    from a 7e-8 relative change in loss, measured). No fixed tolerance on the weights follows from fp32
    arithmetic; so this compares the losses at fp32 reduction tolerance, and the weights at exactly what
    those losses imply: the mixer, replayed from each run's own logged observations, decides exactly that
    run's weights. The two runs' weights thus differ only as far as their losses make them."""
    kinds = ("reference", "mixer_start", "mixer")
    one, two = ([r for r in records if r["event"] in kinds] for records in (single, double))
    assert [(r["event"], r.get("stage"), r.get("step")) for r in one] == \
           [(r["event"], r.get("stage"), r.get("step")) for r in two]
    for a, b in zip(one, two, strict=True):
        if "losses" in b:  # fp32 sums (eps 1.2e-7) over slightly different weights: measured <= 1e-7 relative
            torch.testing.assert_close(torch.tensor(b["losses"]), torch.tensor(a["losses"]), rtol=1e-5, atol=0)
    for records in (one, two):
        logged = [r["weights"] for r in records if r["event"] == "mixer"]
        np.testing.assert_array_equal(_replay(plan, records), logged)  # rank 0 decided from these losses alone


def _replay(plan, records):
    """The weights a fresh mixer decides from a run's `reference`, `mixer_start` and `mixer` records."""
    mixer, decided = build_mixer(plan), []
    for record in records:
        if record["event"] == "reference":
            mixer.set_reference(np.array(record["losses"]))
        elif record["event"] == "mixer_start":
            mixer.start_stage(StageInfo(record["stage"], record["total_steps"], record["target_sparsity"]),
                              restart_weights=record["restart_weights"])
        else:
            mixer.update(Observation(record["step"], np.array(record["losses"]), np.array(record["tokens"]),
                                     record["sparsity"]))
            decided.append(mixer.weights.tolist())
    return decided


def _torchrun(plan, out, **popen):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "shearc.cli", "run", str(plan), "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("stage", ["prune", "recover"])
def test_sharded_runs_checkpoint_and_resume_exactly(tmp_path, stage):
    """Each rank writes its own shards (torch.distributed.checkpoint); killed inside hard-concrete pruning (its
    masks and multipliers in the optimizer beside the sharded model) or recovery, the run resumes to
    bit-identical weights; and one process, with no process group, reads a 2-process recovery checkpoint whole."""
    import os
    import signal
    import time

    from shearc.runtime.train.checkpoint import Checkpoints

    def project(root, devices, strategy):
        return tiny_project(root, "llama-mha", {
            "target": {"layers": 3, "hidden": 32, "heads": 4, "intermediate": 96},
            "prune": PRUNE, "recovery": {**RECOVERY, "steps": 24}, "schedule": {"micro_batch": 2},
            "runtime": {"devices": devices, "strategy": strategy, "checkpoint_interval": 3, "deterministic": True,
                        "keep_checkpoints": 20},
            "export": {"dtype": "float32"}})

    plan = project(tmp_path, 2, "fsdp2")
    clean = _torchrun(plan, tmp_path / "clean")
    assert clean.wait(timeout=300) == 0, clean.stderr.read()[-3000:]
    killed = _torchrun(plan, tmp_path / "run", start_new_session=True)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "run" / "checkpoints").glob(f"0?-{stage}-*")):
        assert killed.poll() is None and time.monotonic() < deadline, killed.stderr.read()[-3000:]
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # torchrun and both workers
    killed.wait()
    assert not (tmp_path / "run" / "done.json").exists()
    checkpoint = [c for c in Checkpoints(tmp_path / "run" / "checkpoints", "", 1).all() if c.meta["stage"] == stage][-1]
    assert checkpoint.sharded is not None and not (checkpoint.path / "model.safetensors").exists()
    assert sorted(p.name for p in checkpoint.sharded.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    if stage == "recover":
        _loads_in_one_process(checkpoint, plan, project(tmp_path / "single", 1, "ddp"), tmp_path / "single-run")
    resumed = _torchrun(plan, tmp_path / "run")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    one = load_file(tmp_path / "clean" / "model" / "model.safetensors")
    two = load_file(tmp_path / "run" / "model" / "model.safetensors")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=0, msg=name)


def _loads_in_one_process(checkpoint, plan, single, out):
    """The sharded checkpoint, read whole in this process (no process group), holds the weights a 1-process run
    of the same recipe (`single`) checkpointed at the same step, to fp32 reduction-order tolerance."""
    from transformers import AutoModelForCausalLM

    from shearc.compiler.source import hf_config

    whole = AutoModelForCausalLM.from_config(hf_config(json.loads(plan.read_text())["target"]["config"]))
    checkpoint.load_model(whole)
    assert main(["run", str(single), "--out", str(out)]) == 0
    same_step = load_file(out / "checkpoints" / checkpoint.path.name / "model.safetensors")
    compared = 0
    for name, tensor in whole.state_dict().items():
        if name in same_step:  # the tied head is stored once
            torch.testing.assert_close(tensor, same_step[name], rtol=1e-4, atol=1e-5, msg=name)
            compared += 1
    assert compared == len(same_step) > 20


TAYLOR = {"method": "taylor", "granularities": ["layer", "head", "intermediate", "hidden"], "calibration_samples": 4,
          "calibration_seq_len": 16, "reconstruct": None}


def test_sharded_finalize_evaluate_and_export_give_one_processs_bytes(tmp_path):
    """One-shot pruning (the same masks on any number of processes) with no recovery: under FSDP2 the prune stage
    hands on no whole model, finalize checks a sharded masked model, evaluate measures sharded models (and each
    whole on rank 0 for latency) and export writes from RUN_DIR/dense/; the files exported are the 1-process run's
    byte for byte (a tied model: its embedding once), the report's losses its own up to reduction order, and every
    stage records each process's peak. The device is declared as small as the source's weights, so the source's
    latency is not measured (it fits no one device) and the result's is."""
    def project(devices):
        return tiny_project(tmp_path / f"devices-{devices}", "llama-tied", {
            "target": {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64}, "prune": TAYLOR,
            "recovery": {"method": "none"}, "eval": {"enabled": True, "sequences_per_domain": 5, "seq_len": 16},
            "runtime": {"devices": devices, "strategy": "fsdp2", "device_memory_gib": 115_008 * 4 / 2**30},
            "export": {"dtype": "float32"}})

    plan = json.loads(project(1).read_text())
    assert plan["source"]["model_info"]["params"] == 115_008
    assert [s["latency_of"] for s in plan["stages"] if s["stage"] == "evaluate"] == [["result"]]
    assert main(["run", str(tmp_path / "devices-1" / "plan.json"), "--out", str(tmp_path / "one")]) == 0
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                             "-m", "shearc.cli", "run", str(project(2)), "--out", str(tmp_path / "two")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = tmp_path / "one" / "model", tmp_path / "two" / "model"
    files = sorted(path.name for path in one.iterdir())
    assert files == sorted(path.name for path in two.iterdir()) and "model.safetensors" in files
    for name in files:
        if name not in ("README.md", "plan.json"):  # the card holds the report; the plan, its devices
            assert (one / name).read_bytes() == (two / name).read_bytes(), name
    single, double = (json.loads((tmp_path / run / "report.json").read_text()) for run in ("one", "two"))
    for side in ("source", "result"):
        assert single[side]["params"] == double[side]["params"]
        np.testing.assert_allclose([d["loss"] for d in double[side]["domains"]],
                                   [d["loss"] for d in single[side]["domains"]], rtol=1e-5)
    assert single["source"]["latency_ms"] is None and double["source"]["latency_ms"] is None
    assert single["result"]["latency_ms"] > 0 and double["result"]["latency_ms"] > 0
    stages = [r for r in _records(tmp_path / "two") if r["event"] == "stage"]
    assert [r["stage"] for r in stages] == ["prune", "finalize", "evaluate", "export"]
    assert all(len(r["peak_rss_bytes_per_process"]) == 2 for r in stages)


@pytest.mark.parametrize("where, call", [("finalize", 2), ("export", 1)])
def test_two_processes_killed_inside_finalize_or_export_finish_again_with_one_processs_bytes(tmp_path, where, call):
    """Rank 0 dies as if killed (os._exit) while the dense shards are half written, or while the export is in its
    staging directory; torchrun stops the other process. Run again on two processes, the run removes what was left
    half-written, resumes, and exports the files a 1-process run exports, byte for byte."""
    from ..stages.test_finalize import KILL, _model_bytes

    def project(devices):
        return tiny_project(tmp_path / f"devices-{devices}", "llama-tied", {
            "target": {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}, "prune": TAYLOR,
            "recovery": {"method": "none"}, "runtime": {"devices": devices, "strategy": "fsdp2"},
            "export": {"dtype": "float32"}})

    assert main(["run", str(project(1)), "--out", str(tmp_path / "one")]) == 0
    script, plan, killed = tmp_path / "kill.py", project(2), tmp_path / "killed"
    script.write_text(KILL.replace("os._exit(137)", "os._exit(137) if int(os.environ['RANK']) == 0 else None"))
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    died = subprocess.run([*launch, str(script), where, str(call), str(plan), str(killed)], capture_output=True,
                          text=True, timeout=300)
    assert died.returncode != 0 and "exitcode: 137" in died.stderr, died.stderr[-3000:]
    staging = ".dense." if where == "finalize" else ".model."
    assert [path for path in killed.iterdir() if path.name.startswith(staging)] and not (killed / "model").exists()
    again = subprocess.run([*launch, "-m", "shearc.cli", "run", str(plan), "--out", str(killed)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    one, two = _model_bytes(tmp_path / "one"), _model_bytes(killed)
    assert one.pop("plan.json") != two.pop("plan.json")  # its runtime.devices
    assert two == one and "model.safetensors" in two
