"""Peak memory per stage, as the operating system and torch count it.

Host: the resident set's high-water mark (VmHWM in /proc/self/status), reset at each stage's
start by writing 5 to /proc/self/clear_refs (Linux); elsewhere nothing is recorded. CUDA:
torch's peak allocation on the device, reset the same way.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
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
    trim_heap()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def trim_heap() -> None:
    with suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextmanager
def trimmed_after_each(modules: Iterable[torch.nn.Module], device: torch.device, every: int = 1) -> Iterator[None]:
    """On a CPU, glibc's heap handed back after every `every`-th of `modules` runs forward. A forward frees buffers
    of a few MB (FSDP2's gathered blocks, autocast's copies of the weights); glibc's mmap threshold rises to the
    largest freed, so it serves the next ones from its heap, which grows through the forwards instead of reusing
    them (bench/bench_heap_trim.py measures it on SmolLM2-135M over 2 processes). A fixed low threshold
    (MALLOC_MMAP_THRESHOLD_=131072) kept it flat too, but made a training step 1.8 times as long, for the rest of
    the process (docs/BENCHMARKS.md)."""
    if device.type != "cpu":
        yield
        return
    handles = [module.register_forward_hook(lambda *_: trim_heap()) for module in list(modules)[every - 1::every]]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


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
