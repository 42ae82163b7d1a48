"""Tokenize a plan's files once per file and tokenizer, on every core and every rank, into a shared cache.

    preparer = Preparer(tokenizer, "text", cache_dir)
    preparer.prepare(files)      # {path: FileTokens}, memory-mapped
    preparer.stats               # the files, tokens and seconds this process tokenized

The file is the unit: a file's stream and its documents' lengths are cached under a key of the file, the
tokenizer and the text field, so every plan and stage reading the same file with the same tokenizer
reads them (`shearc data SPEC` fills the cache ahead of a run). Every core: the fast tokenizers encode
a batch of documents on all cores with their own threads (tokens.py). Every rank: under
torch.distributed the ranks split the files not yet cached (by size) and each reads the others' from
the cache, which the run's processes share; a file the cache does not show a rank (a cache local to
another node) it tokenizes itself. This is a collective: every rank calls it with the same files.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from shearc.errors import UserError
from shearc.prepared import file_fingerprint, record_file, record_rate

from .. import distributed
from .files import file_documents
from .tokens import TokenCache, encode, token_dtype, tokenizer_fingerprint


@dataclass(frozen=True)
class FileTokens:
    tokens: np.ndarray  # the file's documents, each [BOS] tokens [EOS], one after another
    lengths: np.ndarray  # each document's length in `tokens`


@dataclass
class PrepStats:
    files: list[Path] = field(default_factory=list)  # tokenized by this process in this call
    tokens: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"tokenized {len(self.files)} file(s), {self.bytes / 1e6:,.1f} MB: {self.tokens:,} tokens in "
                f"{self.seconds:.1f} s ({self.tokens_per_second:,.0f} tokens/s)")


class Preparer:
    """One tokenizer and text field over a cache directory."""

    def __init__(self, tokenizer: Any, text_field: str, cache_dir: Path) -> None:
        self.tokenizer, self.text_field = tokenizer, text_field
        self.cache = TokenCache(cache_dir / "tokens")
        self.cache_dir = cache_dir
        self.dtype = token_dtype(len(tokenizer))
        self.stats = PrepStats()

    def key(self, path: Path) -> str:
        return self.cache.key(kind="file", file=file_fingerprint(path), text_field=self.text_field,
                              tokenizer=tokenizer_fingerprint(self.tokenizer), dtype=self.dtype.str)

    def cached(self, path: Path) -> FileTokens | None:
        key = self.key(path)
        tokens = self.cache.load(key)  # written last: its presence means the lengths are there too
        return None if tokens is None else FileTokens(tokens, self.cache.load(f"{key}-lengths"))  # type: ignore[arg-type]

    def prepare(self, files: list[Path]) -> dict[Path, FileTokens]:
        """Every file's tokens, tokenizing those not cached (split over the ranks)."""
        missing = [path for path in files if self.cached(path) is None]
        distributed.barrier()  # every rank has looked before any writes: all split the same list
        mine = share(missing, distributed.rank(), distributed.world_size())
        failure = None
        try:
            self._tokenize(mine)
        except UserError as exc:  # an unreadable file: every rank stops, not only the one that read it
            failure = exc
        if distributed.summed(np.array([failure is not None], dtype=float))[0]:  # also the barrier after writing
            raise failure or UserError("another process could not read its share of the data files (its message "
                                       "names the file)", title="unreadable training data")
        out = {}
        for path in files:
            found = self.cached(path)
            if found is None:  # the cache is not shared with the rank that made it
                self._tokenize([path])
                found = self.cached(path)
            out[path] = found  # type: ignore[assignment]
        return out

    def _tokenize(self, files: list[Path]) -> None:
        if not files:
            return
        total = sum(path.stat().st_size for path in files)
        started, tokens = time.perf_counter(), 0
        with _progress(total) as (progress, task):
            for path in files:
                stream, lengths = encode(file_documents(path, self.text_field), self.tokenizer, self.dtype)
                key = self.key(path)
                self.cache.store(f"{key}-lengths", lengths)
                self.cache.store(key, stream)
                tokens += len(stream)
                record_file(self.cache_dir, path, self.text_field, self.tokenizer, len(stream), len(lengths))
                progress.update(task, advance=path.stat().st_size, tokens=tokens)
        seconds = time.perf_counter() - started
        self.stats.files.extend(files)
        self.stats.tokens += tokens
        self.stats.bytes += total
        self.stats.seconds += seconds
        record_rate(self.cache_dir, self.tokenizer, tokens, total, seconds)


def share(files: list[Path], rank: int, world: int) -> list[Path]:
    """This rank's files: the largest first, each to the rank with the fewest bytes so far (ties: lowest rank)."""
    loads, assigned = [0] * world, [[] for _ in range(world)]
    for path in sorted(files, key=lambda p: (-p.stat().st_size, str(p))):
        least = loads.index(min(loads))
        assigned[least].append(path)
        loads[least] += path.stat().st_size
    return sorted(assigned[rank])


class _progress:
    """A bar over the files' bytes with the tokens/s reached (on a terminal)."""

    def __init__(self, total: int) -> None:
        rate = TextColumn("{task.fields[tokens]:,} tokens")
        self.progress = Progress(TextColumn("tokenizing"), BarColumn(), rate, TimeElapsedColumn(),
                                 disable=not sys.stderr.isatty(), transient=True)
        self.total = total

    def __enter__(self) -> tuple[Progress, Any]:
        self.progress.__enter__()
        return self.progress, self.progress.add_task("tokenizing", total=self.total, tokens=0)

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)
