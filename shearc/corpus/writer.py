"""Write the generated domains as the JSON-lines files the data pipeline reads."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

from shearc.canonical import atomic_directory, pretty_json
from shearc.errors import Problem, UserError

from .domains import DOMAINS
from .tasks import write_task

MANIFEST = "corpus.json"


def documents(domain: str, count: int, seed: int, split: str) -> list[str]:
    # One stream per (seed, domain, split): adding a domain or resizing a split changes no other file,
    # and the first N training documents are the same whatever N.
    rng = random.Random(zlib.crc32(f"{seed}/{domain}/{split}".encode()))
    return [DOMAINS[domain](rng) for _ in range(count)]


def write_corpus(out: Path, *, train_documents: int = 8000, eval_documents: int = 200, seed: int = 0) -> dict:
    """Write OUT/<domain>/{train,eval}.jsonl, the generated lm-eval task (OUT/tasks/) and OUT/corpus.json, all
    at once; returns the manifest.

    OUT is replaced only if it is empty or an earlier corpus (it has corpus.json): never a user's folder."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise UserError([Problem(f"{out} exists and is not a shearc corpus (no {MANIFEST}); choose another folder",
                                 file=str(out))], title="will not overwrite")
    manifest: dict = {"seed": seed, "domains": {}}
    with atomic_directory(out) as staging:
        for domain in DOMAINS:
            (staging / domain).mkdir()
            for split, count in (("train", train_documents), ("eval", eval_documents)):
                texts = documents(domain, count, seed, split)
                (staging / domain / f"{split}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n"
                                                                         for t in texts))
                manifest["domains"].setdefault(domain, {})[split] = {"documents": count,
                                                                     "characters": sum(map(len, texts))}
        manifest["tasks"] = [write_task(staging, seed=seed)]
        (staging / MANIFEST).write_text(pretty_json(manifest))
    return manifest
