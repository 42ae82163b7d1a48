"""Peak memory per stage, as the operating system and torch count it.

Host: the resident set's high-water mark (VmHWM in /proc/self/status), reset at each stage's
start by writing 5 to /proc/self/clear_refs (Linux); elsewhere nothing is recorded. CUDA:
torch's peak allocation on the device, reset the same way.
"""

from __future__ import annotations

import ctypes
import gc
from contextlib import suppress
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")


def _status_bytes(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return None


def resident_bytes() -> int | None:
    return _status_bytes("VmRSS")


def release_freed(*, collect: bool = False) -> None:
    """Hand memory freed by earlier work back to the operating system: ask glibc's malloc to trim its heaps
    (tensors of a few MB live there, below malloc's mmap threshold) and CUDA's cache to empty. `collect`
    first collects reference cycles (a released model may sit in one; a full collection takes a few
    hundred ms in a large process, so only where a model was let go)."""
    if collect:
        gc.collect()
    with suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def reset_peaks(device: torch.device) -> None:
    with suppress(OSError):  # not Linux, or not allowed: the peak is then the process's since it started
        Path("/proc/self/clear_refs").write_text("5")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peaks(device: torch.device) -> dict[str, int]:
    """Peaks since the last reset_peaks: peak_rss_bytes (host), peak_cuda_bytes (on CUDA)."""
    found = {}
    rss = _status_bytes("VmHWM")
    if rss is not None:
        found["peak_rss_bytes"] = rss
    if device.type == "cuda":
        found["peak_cuda_bytes"] = torch.cuda.max_memory_allocated(device)
    return found
