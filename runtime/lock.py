"""One run per run directory: RUN_DIR/.lock, held by rank 0 for the run's life.

The lock file is created exclusively and names its holder (pid, host, start time). A second run on
the same directory stops before writing anything (exit 2) and names the holder. A lock left by a
process that died without releasing it (SIGKILL, a lost node) is recognised when its host is this
one and its pid is gone (or is this process itself, which runs one plan at a time: the lock came
with a copied directory), and taken over with a warning; a lock from another host cannot be
checked from here, so it is reported with what to do.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from shearc.errors import Problem, UserError

from . import distributed

LOCK = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _holder(path: Path) -> dict[str, Any] | None:
    """The lock's content; None when it cannot be read as one (a crash while writing it)."""
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _try_create(path: Path, me: dict[str, Any]) -> bool:
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:  # not writable: nothing of the run could be written there either
        raise UserError([Problem(f"cannot write in it: {exc.strerror or exc}", file=str(path.parent))],
                        title="cannot use the run directory") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(me, handle)
    return True


def acquire(run_dir: Path, warn: Any) -> Path:
    """Take RUN_DIR/.lock or raise UserError naming who holds it; `warn(text)` hears of a stale lock taken over."""
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if _try_create(path, me):
        return path
    holder = _holder(path)
    ours = holder is not None and holder.get("host") == me["host"] and holder["pid"] == me["pid"]
    if holder is not None and not ours and (holder.get("host") != me["host"] or _alive(holder["pid"])):
        where = f"pid {holder['pid']} on {holder.get('host')}, since {holder.get('started')}"
        hint = ("wait for it to finish or stop it" if holder.get("host") == me["host"] else
                f"if that run is gone, delete {path}")
        raise UserError([Problem(f"another shearc run ({where}) is using this run directory; {hint}, or choose "
                                 "another with --out", file=str(run_dir))], title="run directory in use")
    gone = ("unreadable" if holder is None else "this very process's: a copy of a directory it was running"
            if ours else f"pid {holder['pid']} on this host, no longer running")
    warn(f"warning: taking over the stale lock of a run that died ({gone}): {path}")
    path.unlink(missing_ok=True)
    if not _try_create(path, me):  # another run took it over in between
        raise UserError([Problem("another shearc run took this run directory's stale lock first",
                                 file=str(run_dir))], title="run directory in use")
    return path


@contextmanager
def run_directory_lock(run_dir: Path, warn: Any) -> Iterator[None]:
    """Rank 0 holds the lock for the block; every rank stops if it could not (one decision, rank 0's)."""
    held, failure = None, None
    if distributed.is_main():
        try:
            held = acquire(run_dir, warn)
        except UserError as exc:
            failure = exc
    if not distributed.from_main(np.array([failure is None], dtype=np.float64))[0]:
        raise failure or UserError([Problem("rank 0 could not lock the run directory", file=str(run_dir))],
                                   title="run directory in use")
    try:
        yield
    finally:
        if held is not None:
            held.unlink(missing_ok=True)
