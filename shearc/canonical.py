"""Canonical JSON and hashing: the same object always gives the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, no NaN: the form every hash in shearc is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_of(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def pretty_json(obj: Any) -> str:
    """Readable, deterministic JSON for files people open (plans, schemas)."""
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write to a temporary file beside `path`, then rename: never a half-written file."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """A staging directory beside `final` (named `.NAME.*`): it replaces `final` when the block
    succeeds and is removed when it fails, so `final` is never half-written."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_staging(parent: Path) -> list[str]:
    """Remove the staging directories (hidden, `.NAME.*`) that a process killed inside atomic_directory left in
    `parent`; only for a directory no other process writes to (a locked run directory). Their names."""
    left = sorted(path for path in parent.glob(".*.*") if path.is_dir()) if parent.is_dir() else []
    for path in left:
        shutil.rmtree(path, ignore_errors=True)
    return [path.name for path in left]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
