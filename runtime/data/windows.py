"""Cut a domain's token stream into windows that begin as the plan says (data.window_bos).

    cut(stream, 128, bos=None)   # [t0 .. t127], [t128 .. t255], ...
    cut(stream, 128, bos=2)      # [2, t0 .. t126], [2, t127 .. t253], ...

With a BOS token, each window is that token followed by the next length - 1 tokens of the stream;
a window whose first stream token is already BOS (a document starts there) takes it as its own
instead of repeating it. Every stream token lands in exactly one window, in order.
"""

from __future__ import annotations

import numpy as np


def window_starts(stream: np.ndarray, length: int, bos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Where each window's stream tokens start, and whether BOS is put in front of it (a window whose stream
    starts with BOS already begins with it)."""
    if length < 2:
        raise ValueError(f"a window of {length} token(s) predicts nothing")
    if bos is None:
        starts = np.arange(0, len(stream), length, dtype=np.int64)
        return starts, np.zeros(len(starts), dtype=bool)
    starts, prefixed, position = [], [], 0
    while position < len(stream):
        own = bool(stream[position] == bos)
        starts.append(position)
        prefixed.append(not own)
        position += length if own else length - 1
    return np.asarray(starts, dtype=np.int64), np.asarray(prefixed, dtype=bool)


def cut(stream: np.ndarray, length: int, bos: int | None, *, full_only: bool = False,
        limit: int | None = None) -> list[np.ndarray]:
    """The stream's windows in order (the last may be shorter unless `full_only`), at most `limit` of them."""
    starts, prefixed = window_starts(stream, length, bos)
    windows = []
    for start, put_bos in zip(starts.tolist(), prefixed.tolist(), strict=True):
        if limit is not None and len(windows) == limit:
            break
        body = stream[start:start + length - put_bos]
        window = np.concatenate([np.asarray([bos], dtype=stream.dtype), body]) if put_bos else np.asarray(body)
        if full_only and len(window) < length:
            break
        windows.append(window)
    return windows


def packed(stream: np.ndarray, length: int, bos: int | None) -> np.ndarray:
    """The full windows as one [windows, length] array (training sequences)."""
    if bos is None:  # a plain reshape: no copy of the stream's windows one by one
        count = len(stream) // length
        return np.asarray(stream[:count * length]).reshape(count, length)
    windows = cut(stream, length, bos, full_only=True)
    return np.stack(windows) if windows else np.zeros((0, length), dtype=stream.dtype)
