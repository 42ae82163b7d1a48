"""One run per run directory, and run directories that cannot be used: exit 2, named, nothing written."""

import json
import os
import socket
import subprocess
import sys

import pytest

from shearc.cli import main

from ..helpers import tiny_project


def _plan(tmp_path):
    return tiny_project(tmp_path, "llama-mha", {"target": {"heads": 4, "intermediate": 96},
                                                "prune": {"method": "magnitude"}, "export": {"dtype": "float32"}})


def _lock(run_dir, pid, host=None):
    run_dir.mkdir(parents=True)
    (run_dir / ".lock").write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                               "started": "2026-11-30 06:00:00"}))


def test_a_second_run_on_a_locked_directory_exits_2_naming_the_holder(tmp_path, capsys):
    plan_path, run_dir = _plan(tmp_path), tmp_path / "runs" / "tiny"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(run_dir, holder.pid)
        assert main(["run", str(plan_path)]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"another shearc run (pid {holder.pid} on {socket.gethostname()}" in err and "Traceback" not in err
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing written, the holder's lock kept


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning_and_released_at_the_end(tmp_path, capsys):
    plan_path, run_dir = _plan(tmp_path), tmp_path / "runs" / "tiny"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(run_dir, dead.pid)
    assert main(["run", str(plan_path)]) == 0
    assert f"taking over the stale lock of a run that died (pid {dead.pid} on this host" in capsys.readouterr().err
    assert not (run_dir / ".lock").exists() and (run_dir / "model" / "config.json").is_file()


def test_a_lock_from_another_host_is_reported_not_taken(tmp_path, capsys):
    plan_path, run_dir = _plan(tmp_path), tmp_path / "runs" / "tiny"
    _lock(run_dir, os.getpid(), host="another-node")
    assert main(["run", str(plan_path)]) == 2
    assert f"if that run is gone, delete {run_dir / '.lock'}" in capsys.readouterr().err


def test_the_lock_is_released_when_a_run_fails(tmp_path, capsys, monkeypatch):
    from shearc.runtime.stages import finalize

    plan_path, run_dir = _plan(tmp_path), tmp_path / "runs" / "tiny"

    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(finalize, "streamed_models", broken)
    with pytest.raises(ValueError, match="a bug"):  # a bug propagates (the CLI's own handler shows it)
        main(["run", str(plan_path)])
    assert (run_dir / "plan.json").is_file() and not (run_dir / ".lock").exists()


def test_out_that_is_a_file_or_cannot_be_made_exits_2(tmp_path, capsys):
    plan_path = _plan(tmp_path)
    (tmp_path / "taken").write_text("mine")
    assert main(["run", str(plan_path), "--out", str(tmp_path / "taken")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err and (tmp_path / "taken").read_text() == "mine"
    assert main(["run", str(plan_path), "--out", str(tmp_path / "taken" / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot create it" in err and "Traceback" not in err


def test_a_run_directory_that_cannot_be_written_exits_2(tmp_path, capsys, monkeypatch):
    """As root every folder is writable, so the refusal of the lock's creation stands in for a read-only one."""
    from shearc.runtime import lock

    plan_path = _plan(tmp_path)
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock.os, "open", read_only)
    assert main(["run", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot write in it: Permission denied" in err and "Traceback" not in err
    assert list((tmp_path / "runs" / "tiny").iterdir()) == []


def test_a_lock_of_this_very_process_came_with_a_copied_directory_and_is_taken_over(tmp_path, capsys):
    plan_path, run_dir = _plan(tmp_path), tmp_path / "runs" / "tiny"
    _lock(run_dir, os.getpid())
    assert main(["run", str(plan_path)]) == 0
    assert "this very process's: a copy of a directory it was running" in capsys.readouterr().err
    assert not (run_dir / ".lock").exists()
