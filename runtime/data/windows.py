"""Cut a domain's token stream into windows that begin as the plan says (data.window_bos).

    cut(stream, 128, bos=None)   # [t0 .. t127], [t128 .. t255], ...
    cut(stream, 128, bos=2)      # [2, t0 .. t126], [2, t127 .. t253], ...
    Windows(stream, 128, bos=2)  # the full windows as a view: len(), [i], .shape; nothing copied

With a BOS token, each window is that token followed by the next length - 1 tokens of the stream;
a window whose first stream token is already BOS (a document starts there) takes it as its own
instead of repeating it. Every stream token lands in exactly one window, in order.

The windows of every length are views of one stream, so a corpus is tokenized once whatever lengths
a plan's stages read it at (domains.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_SCAN = 4096  # document starts tested at a time for the next one a run of windows lands on


def window_starts(stream: np.ndarray, length: int, bos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Where each window's stream tokens start, and whether BOS is put in front of it (a window whose stream
    starts with BOS already begins with it).

    Vectorised: between two windows that begin on a document start, windows advance by length - 1, so the
    starts are a range up to the first document start that range lands on exactly; the Python loop runs once
    per such landing, not once per window (a 50B-token stream has about as many landings as documents / length).
    """
    if length < 2:
        raise ValueError(f"a window of {length} token(s) predicts nothing")
    size = len(stream)
    if bos is None:
        starts = np.arange(0, size, length, dtype=np.int64)
        return starts, np.zeros(len(starts), dtype=bool)
    documents = np.flatnonzero(np.asarray(stream) == bos)
    step, pieces, position = length - 1, [], 0
    while position < size:
        index = int(np.searchsorted(documents, position))
        if index < len(documents) and documents[index] == position:  # the window's own BOS
            pieces.append(np.array([position], dtype=np.int64))
            position += length
            continue
        landing = size
        for begin in range(index, len(documents), _SCAN):
            candidates = documents[begin:begin + _SCAN]
            hits = np.flatnonzero((candidates - position) % step == 0)
            if hits.size:
                landing = int(candidates[hits[0]])
                break
        pieces.append(np.arange(position, landing, step, dtype=np.int64))
        position = landing
    starts = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    return starts, np.asarray(stream[starts] != bos, dtype=bool) if len(starts) else np.zeros(0, dtype=bool)


def _window(stream: np.ndarray, start: int, length: int, bos: int | None, put_bos: bool) -> np.ndarray:
    body = stream[start:start + length - put_bos]
    return np.concatenate([np.asarray([bos], dtype=stream.dtype), body]) if put_bos else np.asarray(body)


def cut(stream: np.ndarray, length: int, bos: int | None, *, full_only: bool = False,
        limit: int | None = None) -> list[np.ndarray]:
    """The stream's windows in order (the last may be shorter unless `full_only`), at most `limit` of them."""
    if limit is not None:  # the first `limit` windows lie within the first limit * length tokens
        stream = stream[:(limit + 1) * length]
    starts, prefixed = window_starts(stream, length, bos)
    windows = []
    for start, put_bos in zip(starts.tolist(), prefixed.tolist(), strict=True):
        if limit is not None and len(windows) == limit:
            break
        window = _window(stream, start, length, bos, put_bos)
        if full_only and len(window) < length:
            break
        windows.append(window)
    return windows


class Windows:
    """The full windows of `length` tokens of a stream (training sequences), read on demand: a view that holds
    the window starts (8 bytes a window), not the windows."""

    def __init__(self, stream: np.ndarray, length: int, bos: int | None, starts: np.ndarray | None = None) -> None:
        if starts is None:
            starts = full_window_starts(stream, length, bos)
        self.stream, self.length, self.bos, self.starts = stream, length, bos, starts

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.starts), self.length)

    def __getitem__(self, index: int) -> np.ndarray:
        start = int(self.starts[index])
        put_bos = self.bos is not None and self.stream[start] != self.bos
        return _window(self.stream, start, self.length, self.bos, put_bos)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        rows = [self[i] for i in range(len(self))]
        stacked = np.stack(rows) if rows else np.zeros((0, self.length), dtype=self.stream.dtype)
        return stacked if dtype is None else stacked.astype(dtype)


def full_window_starts(stream: np.ndarray, length: int, bos: int | None) -> np.ndarray:
    """The starts of the windows that hold `length` tokens: all but a short last one."""
    starts, prefixed = window_starts(stream, length, bos)
    if len(starts) and starts[-1] + length - prefixed[-1] > len(stream):
        starts = starts[:-1]
    return starts
