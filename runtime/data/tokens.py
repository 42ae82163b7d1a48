"""Tokenize documents into one flat stream, cached on disk.

Each document becomes [BOS] tokens [EOS] (either omitted if the tokenizer has none). A file's stream and its
documents' lengths are written once, keyed by a fingerprint of the file (path, size, mtime), the tokenizer
and the text field (never the sequence length: windows are views, windows.py), and memory-mapped afterwards.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from shearc.canonical import sha256_of

_FINGERPRINTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
ENCODE_BATCH = 1024  # documents per call: the fast tokenizers encode a batch on every core (their own threads)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's whole definition and special tokens; once per tokenizer object (serialising a
    262,144-token vocabulary takes a third of a second, and every domain of every stage asks)."""
    if tokenizer in _FINGERPRINTS:
        return _FINGERPRINTS[tokenizer]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    special = [tokenizer.bos_token_id, tokenizer.eos_token_id]
    _FINGERPRINTS[tokenizer] = fingerprint = hashlib.sha256((text + json.dumps(special)).encode()).hexdigest()
    return fingerprint


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def encode(documents: list[str], tokenizer: Any, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The documents as one stream, each [BOS] + tokens + [EOS], and each document's length in it."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    extra = (bos is not None) + (eos is not None)
    streams, lengths = [], []
    for begin in range(0, len(documents), ENCODE_BATCH):
        encoded = tokenizer(documents[begin:begin + ENCODE_BATCH], add_special_tokens=False)["input_ids"]
        body = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=dtype, count=int(body.sum()))
        size = body + extra
        stream = np.empty(int(size.sum()), dtype=dtype)
        starts = np.cumsum(size) - size  # where each document begins in the stream
        if bos is not None:
            stream[starts] = bos
        if eos is not None:
            stream[starts + size - 1] = eos
        # each document's tokens go after its BOS: shift the flat tokens by their document's offset
        stream[np.arange(len(flat)) + np.repeat(starts + (bos is not None) - (np.cumsum(body) - body), body)] = flat
        streams.append(stream)
        lengths.append(size)
    if not streams:
        return np.zeros(0, dtype=dtype), np.zeros(0, dtype=np.int64)
    return np.concatenate(streams), np.concatenate(lengths)


class TokenCache:
    """Token arrays on disk under `directory`, one .npy (memory-mapped) per key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def key(self, **parts: Any) -> str:
        return sha256_of(parts)[:32]

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def store(self, key: str, tokens: np.ndarray) -> np.ndarray:
        """Write atomically (temp file, then rename), then map the file back."""
        with self.writing(key, tokens.shape, tokens.dtype) as out:
            out[...] = tokens
        return self.load(key)  # type: ignore[return-value]

    def writing(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> _Writing:
        """A memory-mapped .npy to fill (`with cache.writing(...) as out:`); it appears under `key` only once
        the block ends without an error."""
        return _Writing(self, key, shape, dtype)


class _Writing:
    def __init__(self, cache: TokenCache, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = cache.path(key)
        self.tmp = cache.directory / f".{key}.{os.getpid()}.npy"
        self.shape, self.dtype = shape, dtype
        cache.directory.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> np.ndarray:
        self.out = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=self.dtype, shape=self.shape)
        return self.out

    def __exit__(self, kind: Any, *rest: Any) -> None:
        try:
            if kind is None:
                self.out.flush()
                del self.out
                os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)
