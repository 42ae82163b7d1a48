"""What preparation left in the data cache, readable without the runtime: where the cache is, the tokens each
prepared file holds and the rate this machine reached (`shearc explain` estimates from them; runtime/data
writes them).

    data_cache_dir()                                   # $SHEARC_CACHE/data, else ~/.cache/shearc/data
    recorded_tokens(cache, path, "text", tokenizer)     # None until `shearc data` or a run prepared it
    read_rate(cache)                                    # {"tokens_per_second": ..., "bytes_per_token": ...}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from shearc.canonical import sha256_of

MEASURED = "measured.json"  # the last preparation's rate


def data_cache_dir() -> Path:
    """Where prepared data is kept for every plan and run: $SHEARC_CACHE, else $XDG_CACHE_HOME/shearc, else
    ~/.cache/shearc; then data/."""
    root = os.environ.get("SHEARC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "shearc")
    return Path(root) / "data"


def writable_data_cache() -> Path:
    """The data cache, made if need be; a clear error (exit 2) where it cannot be written."""
    from shearc.errors import UserError

    directory = data_cache_dir()
    probe = directory / f".probe.{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write the data cache {directory}: {exc.strerror or exc}; set SHEARC_CACHE to a "
                        "writable directory", title="no place for prepared data") from None
    return directory


def file_fingerprint(path: Path) -> list[Any]:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def tokenizer_source(reference: str, base_dir: Path) -> str:
    """Where a plan's tokenizer is loaded from: its directory relative to the plan when there is one, else the
    reference as given (a hub name, from the local Hugging Face cache)."""
    local = base_dir / reference
    return str(local) if local.exists() else reference


def tokenizer_name(tokenizer_or_reference: Any) -> str:
    """The tokenizer as explain can name it before loading it: its directory, resolved, or its hub name."""
    name = str(getattr(tokenizer_or_reference, "name_or_path", tokenizer_or_reference))
    return str(Path(name).resolve()) if Path(name).exists() else name


def _file_record(cache_dir: Path, path: Path, text_field: str, tokenizer: str) -> Path:
    key = sha256_of({"file": file_fingerprint(path), "text_field": text_field, "tokenizer": tokenizer})[:32]
    return cache_dir / "files" / f"{key}.json"


def record_file(cache_dir: Path, path: Path, text_field: str, tokenizer: Any, tokens: int, documents: int) -> None:
    """A prepared file's size in tokens, where explain finds it without loading the tokenizer."""
    record = _file_record(cache_dir, path, text_field, tokenizer_name(tokenizer))
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(f".{record.name}.{os.getpid()}")
    tmp.write_text(json.dumps({"tokens": tokens, "documents": documents}))
    tmp.replace(record)


def recorded_tokens(cache_dir: Path, path: Path, text_field: str, tokenizer: str) -> int | None:
    """The tokens `path` holds, if a preparation here recorded them (None: not prepared, or changed since)."""
    try:
        return int(json.loads(_file_record(cache_dir, path, text_field, tokenizer).read_text())["tokens"])
    except (OSError, ValueError, KeyError):
        return None


def record_rate(cache_dir: Path, tokenizer: Any, tokens: int, size: int, seconds: float) -> None:
    """What this machine reached, for explain's estimate before a corpus is prepared (best effort: a cache another
    process writes at the same time keeps one of the two)."""
    if not tokens or seconds <= 0:
        return
    record = {"tokenizer": tokenizer_name(tokenizer), "tokens_per_second": tokens / seconds,
              "bytes_per_token": size / tokens, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = cache_dir / MEASURED
    tmp = path.with_name(f".{MEASURED}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(record))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)


def read_rate(cache_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((cache_dir / MEASURED).read_text())
    except (OSError, ValueError):
        return None
