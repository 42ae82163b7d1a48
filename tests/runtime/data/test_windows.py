"""Windows begin as the plan says: with BOS in front, each stream token in exactly one window, BOS never doubled."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shearc.runtime.data.windows import Windows, cut, window_starts

BOS = 1


def test_without_bos_windows_are_the_stream_cut_in_order():
    stream = np.arange(2, 12)
    assert [w.tolist() for w in cut(stream, 4, None)] == [[2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]
    assert np.asarray(Windows(stream, 4, None)).tolist() == [[2, 3, 4, 5], [6, 7, 8, 9]]


def test_with_bos_each_window_begins_with_it_and_a_document_start_is_not_doubled():
    stream = np.array([5, 6, 7, 8, BOS, 9, 10, 11, 12, 13])
    windows = [w.tolist() for w in cut(stream, 4, BOS)]
    assert windows == [[BOS, 5, 6, 7], [BOS, 8, BOS, 9], [BOS, 10, 11, 12], [BOS, 13]]
    stream = np.array([5, 6, 7, BOS, 9, 10, 11, 12])  # the second window's stream starts with BOS: its own
    assert [w.tolist() for w in cut(stream, 4, BOS)] == [[BOS, 5, 6, 7], [BOS, 9, 10, 11], [BOS, 12]]
    assert np.asarray(Windows(stream, 4, BOS)).tolist() == [[BOS, 5, 6, 7], [BOS, 9, 10, 11]]


def test_limits_and_full_windows():
    stream = np.arange(2, 40)
    assert len(cut(stream, 4, BOS, limit=2)) == 2
    assert all(len(w) == 4 for w in cut(stream, 4, BOS, full_only=True))
    with pytest.raises(ValueError, match="predicts nothing"):
        cut(stream, 1, None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 6), max_size=60), st.integers(2, 9), st.booleans())
def test_every_stream_token_lands_once_in_order(tokens, length, with_bos):
    stream = np.asarray(tokens, dtype=np.int64)
    bos = BOS if with_bos else None
    windows = cut(stream, length, bos)
    starts, prefixed = window_starts(stream, length, bos)
    assert len(windows) == len(starts) and all(len(w) == length for w in windows[:-1])
    position = 0
    for window, start, put_bos in zip(windows, starts, prefixed, strict=True):
        assert start == position
        own = window[1:] if put_bos else window
        assert own.tolist() == stream[start:start + len(own)].tolist()
        if bos is not None:  # BOS first: put in front, or the stream's own where a document starts
            assert window[0] == BOS and (not put_bos or stream[start] != BOS)
        position += len(own)
    assert position == len(stream)


def _starts_one_window_at_a_time(stream, length, bos):
    """The rule as the docstring states it, one window per step: the reference for the vectorised starts."""
    starts, prefixed, position = [], [], 0
    while position < len(stream):
        own = bos is not None and stream[position] == bos
        starts.append(position)
        prefixed.append(bos is not None and not own)
        position += length if own or bos is None else length - 1
    return starts, prefixed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 4), max_size=400), st.integers(2, 12), st.booleans())
def test_vectorised_starts_match_one_window_at_a_time(tokens, length, with_bos):
    stream = np.asarray(tokens, dtype=np.uint16)
    bos = BOS if with_bos else None
    starts, prefixed = window_starts(stream, length, bos)
    assert (starts.tolist(), prefixed.tolist()) == _starts_one_window_at_a_time(stream, length, bos)
    windows = Windows(stream, length, bos)  # the full ones, read on demand
    full = cut(stream, length, bos, full_only=True)
    assert len(windows) == len(full) and windows.shape == (len(full), length)
    assert all(windows[i].tolist() == full[i].tolist() for i in range(len(full)))
    assert [w.tolist() for w in cut(stream, length, bos, limit=3)] == [w.tolist() for w in cut(stream, length, bos)[:3]]


@pytest.mark.parametrize("length", [2, 7, 128])
def test_vectorised_starts_on_a_long_stream(length):
    """Long enough that the landing search crosses its scan blocks (windows._SCAN document starts at a time)."""
    rng = np.random.default_rng(length)
    stream = rng.integers(2, 50, size=60_000).astype(np.uint16)
    stream[rng.choice(len(stream), size=12_000, replace=False)] = BOS
    starts, prefixed = window_starts(stream, length, BOS)
    assert (starts.tolist(), prefixed.tolist()) == _starts_one_window_at_a_time(stream, length, BOS)
