"""What a plan's data costs to prepare: the tokens each domain holds, and the time to tokenize what is not yet.

A file prepared here (`shearc data`, or a run) has its token count recorded in the data cache
(shearc/prepared.py); any other is estimated from its size at the bytes per token the last preparation
here measured (DEFAULT_BYTES_PER_TOKEN before any), and the time at the tokens/s it reached.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shearc.prepared import data_cache_dir, read_rate, recorded_tokens, tokenizer_name, tokenizer_source

DEFAULT_BYTES_PER_TOKEN = 4.0  # English text under a BPE vocabulary of 32k-256k tokens: about 4 characters a token


def matching_files(base: Path, patterns: list[str]) -> list[Path]:
    """The files `patterns` match, relative to `base`, sorted, each once."""
    found: set[Path] = set()
    for pattern in patterns:
        full = os.path.join(base, os.path.expanduser(pattern))
        found.update(Path(p) for p in glob.glob(full, recursive=True) if os.path.isfile(p))
    return sorted(found)


@dataclass(frozen=True)
class DomainTokens:
    name: str
    prepared: int  # tokens of the files prepared here
    estimated: int  # tokens estimated for the others, from their size
    unprepared_bytes: int


def domain_tokens(plan: dict[str, Any], plan_dir: Path, bytes_per_token: float) -> list[DomainTokens]:
    data = plan["data"]
    tokenizer = tokenizer_name(tokenizer_source(data["tokenizer"], plan_dir))
    cache = data_cache_dir()
    out = []
    for domain in data["domains"]:
        prepared = estimated = unprepared = 0
        for path in matching_files(plan_dir, domain["train"] + domain["eval"]):
            tokens = recorded_tokens(cache, path, data["text_field"], tokenizer)
            if tokens is None:
                size = path.stat().st_size
                unprepared += size
                estimated += round(size / bytes_per_token)
            else:
                prepared += tokens
        out.append(DomainTokens(domain["name"], prepared, estimated, unprepared))
    return out


def data_cost_lines(plan: dict[str, Any], plan_dir: Path) -> tuple[list[DomainTokens], str]:
    """Each domain's tokens, and a line on preparing what is not yet prepared."""
    rate = read_rate(data_cache_dir())
    bytes_per_token = rate["bytes_per_token"] if rate else DEFAULT_BYTES_PER_TOKEN
    domains = domain_tokens(plan, plan_dir, bytes_per_token)
    estimated = sum(d.estimated for d in domains)
    if not estimated:
        prepared = sum(d.prepared for d in domains)
        return domains, f"data: every file prepared ({prepared:,} tokens), in {data_cache_dir()}"
    basis = (f"{bytes_per_token:.2f} bytes a token as measured here {rate['measured_at']}" if rate
             else f"{DEFAULT_BYTES_PER_TOKEN:g} bytes a token (nothing prepared here yet)")
    size = sum(d.unprepared_bytes for d in domains) / 1e6
    if rate:
        seconds = estimated / rate["tokens_per_second"]
        time = f"about {_duration(seconds)} at the {rate['tokens_per_second']:,.0f} tokens/s measured here"
    else:
        time = "time unknown until a preparation here measures the rate"
    return domains, (f"data to prepare: {size:,.1f} MB, about {estimated:,} tokens ({basis}); {time}; "
                     f"`shearc data` prepares it ahead of the run")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
