"""A plan's domains as token streams: training windows and a held-out eval stream.

    data:
      domains:
        - {name: code, weight: 0.3, train: [data/code/*.jsonl], eval: [data/code/eval.jsonl]}
      eval_fraction: 0.0   # or hold out this fraction of documents when a domain lists no eval files

    load_domains(data, ..., seq_len=128)             # every file of every domain
    load_domains(data, ..., seq_len=128, head=8192)  # files in order until each stream holds 8,192 tokens

Files are tokenized once per tokenizer (prepare.py); a domain's train and eval streams are assembled from
them (documents held out by eval_fraction go to eval) and cached without a sequence length; training
windows of any length are views of the train stream (windows.py), and windows begin as the plan says
(data.window_bos). A stage that reads a few windows (calibration, the finalize check) passes `head` and
waits only for the files that hold them. A domain with no training sequence, or an eval set with no
tokens, is a UserError here, before any training: never a NaN loss later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shearc.errors import Problem, UserError
from shearc.plan import DataPlan, DomainPlan
from shearc.prepared import tokenizer_source

from .files import expand
from .prepare import FileTokens, Preparer
from .windows import Windows, cut, full_window_starts


@dataclass(frozen=True)
class DomainData:
    name: str
    train: Windows | np.ndarray  # [sequences, seq_len]: len(), [i], .shape
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

    source = tokenizer_source(reference, base_dir)
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError([Problem(f"cannot load tokenizer {reference!r}: {exc}", "data.tokenizer")],
                        title="tokenizer not found") from None


def held_out(index: int, seed: int, fraction: float) -> bool:
    """Deterministic, streaming choice of eval documents: a hash of (seed, index) below `fraction`."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


@dataclass(frozen=True)
class DomainFiles:
    name: str
    path: str  # where in the plan: data.domains[i]
    train: list[Path]
    eval: list[Path]  # empty: held out of `train` by `fraction`
    fraction: float


def domain_files(domain: DomainPlan, index: int, data: DataPlan, base_dir: Path) -> DomainFiles:
    name, path = domain.name, f"data.domains[{index}]"
    train = expand(domain.train, base_dir)
    if not train:
        raise UserError([Problem(f"domain {name!r}: no file matches {domain.train} (relative to {base_dir})",
                                 f"{path}.train")])
    evaluated = expand(domain.eval, base_dir)
    if domain.eval and not evaluated:
        raise UserError([Problem(f"domain {name!r}: no file matches {domain.eval} (relative to {base_dir})",
                                 f"{path}.eval")])
    return DomainFiles(name, path, train, evaluated, 0.0 if evaluated else data.eval_fraction)


def load_domains(data: DataPlan, *, base_dir: Path, tokenizer: Any, seq_len: int, seed: int, cache_dir: Path,
                 head: int | None = None, preparer: Preparer | None = None) -> list[DomainData]:
    """Every domain of the plan's `data` section, its training windows `seq_len` long; all problems reported
    together. `head`: the caller reads at most this many tokens of each stream, so files are tokenized in order
    only until each stream holds that many (or the files run out). `preparer`: one made by the caller, to read
    what it tokenized (its stats). A collective under torch.distributed."""
    preparer = preparer or Preparer(tokenizer, data.text_field, cache_dir)
    found, problems = [], []
    for index, domain in enumerate(data.domains):
        try:
            found.append(domain_files(domain, index, data, base_dir))
        except UserError as exc:
            problems.extend(exc.problems)
    if head is None:  # all at once: the ranks split every domain's files together
        preparer.prepare(sorted({path for files in found for path in files.train + files.eval}))
    domains = []
    for files in found:
        try:
            domains.append(_domain(files, preparer, data.window_bos, seq_len, seed, head))
        except UserError as exc:
            problems.extend(exc.problems)
    if problems:
        raise UserError(problems, title="unusable training data")
    return domains


def _domain(files: DomainFiles, preparer: Preparer, bos: int | None, seq_len: int, seed: int,
            head: int | None) -> DomainData:
    if files.fraction:
        train_files = _enough(files.train, preparer, head, seed, files.fraction)
        parts = preparer.prepare(train_files)
        train_key, train = _assembled(preparer, "train", train_files, parts, seed, files.fraction, keep=True)
        _, held = _assembled(preparer, "eval", train_files, parts, seed, files.fraction, keep=False)
    else:
        train_files = _enough(files.train, preparer, head, seed, 0.0)
        train_key, train = _assembled(preparer, "train", train_files, preparer.prepare(train_files), seed, 0.0)
        eval_files = _enough(files.eval, preparer, head, seed, 0.0)
        _, held = _assembled(preparer, "eval", eval_files, preparer.prepare(eval_files), seed, 0.0)
    windows = Windows(train, seq_len, bos, _starts(preparer, train_key, train, seq_len, bos))
    problems = []
    if len(windows) == 0:
        problems.append(Problem(f"domain {files.name!r} has fewer than {seq_len} training tokens: not one sequence",
                                f"{files.path}.train"))
    if len(held) == 0:
        where = f"{files.path}.eval" if files.eval else "data.eval_fraction"
        problems.append(Problem(f"domain {files.name!r} has an empty eval set (no tokens)", where))
    if problems:
        raise UserError(problems)
    return DomainData(name=files.name, train=windows, eval=held, window_bos=bos)


def _enough(paths: list[Path], preparer: Preparer, head: int | None, seed: int, fraction: float) -> list[Path]:
    """The first files that hold `head` tokens (with `fraction`: both kept for training and held out), prepared
    one at a time; all of them when `head` is None."""
    if head is None:
        return paths
    kept = held = first = 0
    for index, path in enumerate(paths):
        part = preparer.prepare([path])[path]
        out = int(part.lengths[_held(part, first, seed, fraction)].sum()) if fraction else 0
        first += len(part.lengths)
        kept, held = kept + len(part.tokens) - out, held + out
        if min(kept, held) >= head if fraction else kept >= head:
            return paths[:index + 1]
    return paths


def _held(part: FileTokens, first: int, seed: int, fraction: float) -> np.ndarray:
    """Which of a file's documents are held out, its first numbered `first` (documents are numbered across a
    domain's files in order)."""
    count = len(part.lengths)
    return np.fromiter((held_out(first + i, seed, fraction) for i in range(count)), dtype=bool, count=count)


def _assembled(preparer: Preparer, kind: str, paths: list[Path], parts: dict[Path, FileTokens], seed: int,
               fraction: float, keep: bool = True) -> tuple[str, np.ndarray]:
    """The stream of `paths`' documents (with `fraction`: those kept for training, or those held out), cached
    under the key it returns; one file taken whole is that file's own cache entry."""
    if len(paths) == 1 and not fraction:
        return preparer.key(paths[0]), parts[paths[0]].tokens
    key = preparer.cache.key(kind=kind, files=[preparer.key(path) for path in paths], fraction=fraction,
                             seed=seed if fraction else None)
    cached = preparer.cache.load(key)
    if cached is not None:
        return key, cached
    chosen = [parts[path] for path in paths]
    firsts = np.cumsum([0] + [len(part.lengths) for part in chosen])
    masks = ([np.repeat(_held(part, int(first), seed, fraction) != keep, part.lengths)
              for part, first in zip(chosen, firsts, strict=False)] if fraction else [None] * len(chosen))
    size = sum(len(p.tokens) if m is None else int(m.sum()) for p, m in zip(chosen, masks, strict=True))
    with preparer.cache.writing(key, (size,), preparer.dtype) as out:
        position = 0
        for part, mask in zip(chosen, masks, strict=True):
            tokens = part.tokens if mask is None else part.tokens[mask]
            out[position:position + len(tokens)] = tokens
            position += len(tokens)
    return key, preparer.cache.load(key)  # type: ignore[return-value]


def _starts(preparer: Preparer, stream_key: str, stream: np.ndarray, length: int, bos: int | None) -> np.ndarray:
    """The full windows' starts, cached beside the stream (8 bytes a window)."""
    key = preparer.cache.key(kind="windows", stream=stream_key, length=length, bos=bos)
    starts = preparer.cache.load(key)
    return starts if starts is not None else preparer.cache.store(key, full_window_starts(stream, length, bos))
