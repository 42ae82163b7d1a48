"""SIGTERM and SIGINT ask the run to stop: the loop checkpoints after the current step and exits (code 130)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

_requested = False


def stop_requested() -> bool:
    return _requested


@contextmanager
def stop_on_signals() -> Iterator[None]:
    global _requested
    _requested = False

    def request(signum: int, frame: object) -> None:
        global _requested
        if _requested:  # a second signal: stop now
            raise KeyboardInterrupt
        _requested = True

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _requested = False
