"""A damaged newest checkpoint is passed over for the one before it, with a warning naming it; a process killed
while writing a checkpoint leaves none half-written."""

import subprocess
import sys
import textwrap

import pytest

from shearc.cli import main

from ...helpers import tiny_project
from .test_nonfinite import poison  # noqa: F401  (the fixture)

RECOVERY = {"method": "full", "steps": 6, "global_batch": 4, "seq_len": 16, "lr": 1e-3, "warmup_steps": 1,
            "eval_interval": 2}


def _stopped_run(tmp_path, poison):  # noqa: F811
    """A run stopped at recovery step 5 (a NaN, policy stop), with checkpoints at recovery steps 2 and 4."""
    plan_path = tiny_project(tmp_path, "llama-mha", {
        "target": {"heads": 4, "intermediate": 96}, "prune": {"method": "magnitude"}, "recovery": RECOVERY,
        "runtime": {"checkpoint_interval": 2, "keep_checkpoints": 10}, "export": {"dtype": "float32"}})
    poison({4})
    assert main(["run", str(plan_path)]) == 2
    poison(set())
    return plan_path, tmp_path / "runs" / "tiny" / "checkpoints"


@pytest.mark.parametrize(("file", "damage"), [("model.safetensors", "truncated:"),
                                              ("trainer.pt", "not a readable torch.save file"),
                                              ("meta.json", "its meta.json is unreadable")])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(tmp_path, capsys, poison, file, damage):  # noqa: F811
    plan_path, checkpoints = _stopped_run(tmp_path, poison)
    target = checkpoints / "02-recover-00000004" / file
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    capsys.readouterr()
    assert main(["run", str(plan_path)]) == 0
    err = capsys.readouterr().err
    assert f"skipping the damaged checkpoint 02-recover-00000004 ({damage}" in err
    assert "resuming from 02-recover-00000002 (recover, step 2)" in err


KILL_WHILE_WRITING = """
import os, signal, sys
import torch
from shearc.cli import main
from shearc.runtime.train import checkpoint

saves = []
real_save = torch.save

def dying_save(obj, path, *args, **kwargs):  # the second in-stage checkpoint dies halfway through its trainer.pt
    saves.append(str(path))
    in_stage = [s for s in saves if "-recover-" in s]
    if len(in_stage) == 2:
        with open(path, "wb") as handle:
            handle.write(b"PK half")
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, path, *args, **kwargs)

checkpoint.torch.save = dying_save
sys.exit(main(["run", sys.argv[1]]))
"""


def test_a_process_killed_while_writing_a_checkpoint_leaves_none_half_written(tmp_path, capsys):
    plan_path = tiny_project(tmp_path, "llama-mha", {
        "target": {"heads": 4, "intermediate": 96}, "prune": {"method": "magnitude"}, "recovery": RECOVERY,
        "runtime": {"checkpoint_interval": 2, "keep_checkpoints": 10}, "export": {"dtype": "float32"}})
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(KILL_WHILE_WRITING), str(plan_path)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoints = tmp_path / "runs" / "tiny" / "checkpoints"
    visible = sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith("."))
    assert "02-recover-00000004" not in visible and "02-recover-00000002" in visible
    assert any(p.name.startswith(".02-recover-00000004") for p in checkpoints.iterdir())  # the staging, hidden
    assert main(["run", str(plan_path)]) == 0
    assert "resuming from 02-recover-00000002 (recover, step 2)" in capsys.readouterr().err
