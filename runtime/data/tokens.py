"""Tokenize documents and pack them into fixed-length sequences, cached on disk.

Each document becomes [BOS] tokens [EOS]; the stream is cut into sequences of
`seq_len` tokens (a trailing remainder is dropped from training data, kept for
eval). Arrays are written once, keyed by a fingerprint of the files (path, size,
mtime), the tokenizer and the sequence length, and memory-mapped afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from shearc.canonical import sha256_of

_FINGERPRINTS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


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


def files_fingerprint(files: list[Path]) -> list[list[Any]]:
    out = []
    for path in files:
        stat = path.stat()
        out.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def tokenize(documents: Iterable[str], tokenizer: Any, batch: int = 256) -> Iterable[np.ndarray]:
    """One array per document: [BOS] + tokens + [EOS] (either omitted if the tokenizer has none)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pending: list[str] = []

    def flush() -> Iterable[np.ndarray]:
        encoded = tokenizer(pending, add_special_tokens=False)["input_ids"]
        for ids in encoded:
            yield np.asarray(([bos] if bos is not None else []) + ids + ([eos] if eos is not None else []))

    for document in documents:
        pending.append(document)
        if len(pending) == batch:
            yield from flush()
            pending = []
    if pending:
        yield from flush()


class TokenCache:
    """Token arrays on disk under `directory`, one .npy (memory-mapped) per fingerprint."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def key(self, **parts: Any) -> str:
        return sha256_of(parts)[:32]

    def load(self, key: str) -> np.ndarray | None:
        path = self.directory / f"{key}.npy"
        return np.load(path, mmap_mode="r") if path.is_file() else None

    def store(self, key: str, tokens: np.ndarray) -> np.ndarray:
        """Write atomically (temp file, then rename), then map the file back."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{key}.npy"
        tmp = self.directory / f".{key}.{os.getpid()}.npy"
        try:
            np.save(tmp, tokens)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return np.load(path, mmap_mode="r")
