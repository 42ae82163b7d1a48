"""A plan's domains as token arrays: packed training windows and a held-out eval stream.

    data:
      domains:
        - {name: code, weight: 0.3, train: [data/code/*.jsonl], eval: [data/code/eval.jsonl]}
      eval_fraction: 0.0   # or hold out this fraction of documents when a domain lists no eval files

Windows begin as the plan says (data.window_bos; windows.py). A domain with no training sequence,
or an eval set with no tokens, is a UserError here, before any training: never a NaN loss later.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from shearc.errors import Problem, UserError
from shearc.plan import DataPlan, DomainPlan

from .files import expand, read_documents
from .tokens import TokenCache, files_fingerprint, token_dtype, tokenize, tokenizer_fingerprint
from .windows import cut, packed


@dataclass(frozen=True)
class DomainData:
    name: str
    train: np.ndarray  # [sequences, seq_len], each a window as windows.py cuts them
    eval: np.ndarray  # flat token stream, evaluated in windows
    window_bos: int | None = None  # the token every window begins with (the plan's data.window_bos)

    @property
    def seq_len(self) -> int:
        return self.train.shape[1]

    def eval_windows(self, length: int, limit: int) -> list[np.ndarray]:
        """The first `limit` windows of the eval stream (the last may be shorter); a window of one token predicts
        nothing and is dropped."""
        return [w for w in cut(self.eval, length, self.window_bos, limit=limit) if len(w) > 1]


def load_tokenizer(reference: str, base_dir: Path, trust_remote_code: bool = False) -> Any:
    """A tokenizer from a directory (relative to the plan) or the local Hugging Face cache."""
    from transformers import AutoTokenizer

    local = base_dir / reference
    source = str(local) if local.exists() else reference
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError([Problem(f"cannot load tokenizer {reference!r}: {exc}", "data.tokenizer")],
                        title="tokenizer not found") from None


def held_out(index: int, seed: int, fraction: float) -> bool:
    """Deterministic, streaming choice of eval documents: a hash of (seed, index) below `fraction`."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


def _concatenate(arrays: Iterable[np.ndarray], dtype: np.dtype) -> np.ndarray:
    parts = [a.astype(dtype, copy=False) for a in arrays]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def load_domains(data: DataPlan, *, base_dir: Path, tokenizer: Any, seq_len: int, seed: int,
                 cache_dir: Path) -> list[DomainData]:
    """Every domain of the plan's `data` section; all problems reported together."""
    cache = TokenCache(cache_dir / "tokens")
    domains, problems = [], []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  disable=not sys.stderr.isatty(), transient=True) as progress:
        for index, domain in enumerate(data.domains):
            task = progress.add_task(f"tokenizing domain {domain.name}")
            try:
                domains.append(_load_domain(domain, index, data, base_dir, tokenizer, seq_len, seed, cache, cache_dir))
            except UserError as exc:
                problems.extend(exc.problems)
            progress.remove_task(task)
    if problems:
        raise UserError(problems, title="unusable training data")
    return domains


def _load_domain(domain: DomainPlan, index: int, data: DataPlan, base_dir: Path, tokenizer: Any,
                 seq_len: int, seed: int, cache: TokenCache, cache_dir: Path) -> DomainData:
    name, path = domain.name, f"data.domains[{index}]"
    train_files = expand(domain.train, base_dir)
    if not train_files:
        raise UserError([Problem(f"domain {name!r}: no file matches {domain.train} (relative to {base_dir})",
                                 f"{path}.train")])
    eval_files = expand(domain.eval, base_dir)
    if domain.eval and not eval_files:
        raise UserError([Problem(f"domain {name!r}: no file matches {domain.eval} (relative to {base_dir})",
                                 f"{path}.eval")])
    fraction = 0.0 if eval_files else data.eval_fraction
    dtype = token_dtype(len(tokenizer))
    common = {"tokenizer": tokenizer_fingerprint(tokenizer), "text_field": data.text_field, "dtype": dtype.str}
    train_key = cache.key(kind="train", files=files_fingerprint(train_files), seq_len=seq_len, fraction=fraction,
                          seed=seed if fraction else None, window_bos=data.window_bos, **common)
    eval_key = cache.key(kind="eval", files=files_fingerprint(eval_files or train_files), fraction=fraction,
                         seed=seed if fraction else None, **common)
    train, held = cache.load(train_key), cache.load(eval_key)
    if train is None or held is None:
        datasets_cache = cache_dir / "datasets"
        documents = tokenize(read_documents(train_files, data.text_field, datasets_cache), tokenizer)
        if fraction:
            kept, evaluated = [], []
            for number, ids in enumerate(documents):
                (evaluated if held_out(number, seed, fraction) else kept).append(ids)
            stream, held_stream = _concatenate(kept, dtype), _concatenate(evaluated, dtype)
        else:
            stream = _concatenate(documents, dtype)
            held_stream = _concatenate(tokenize(read_documents(eval_files, data.text_field, datasets_cache),
                                                tokenizer), dtype)
        train = cache.store(train_key, packed(stream, seq_len, data.window_bos))
        held = cache.store(eval_key, held_stream)
    problems = []
    if len(train) == 0:
        problems.append(Problem(f"domain {name!r} has fewer than {seq_len} training tokens: not one sequence",
                                f"{path}.train"))
    if len(held) == 0:
        where = f"{path}.eval" if eval_files else "data.eval_fraction"
        problems.append(Problem(f"domain {name!r} has an empty eval set (no tokens)", where))
    if problems:
        raise UserError(problems)
    return DomainData(name=name, train=train, eval=held, window_bos=data.window_bos)
