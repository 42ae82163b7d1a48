"""`shearc data SPEC`: prepare a plan's data ahead of its run, into the cache every run and plan reads.

    shearc data spec.yaml      # or plan.json; under torchrun the processes split the files

Each domain's files are tokenized (on every core, prepare.py) and its streams assembled; the line it ends
with says the tokens/s reached, which `shearc explain` then uses for its estimates on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shearc.plan import Plan
from shearc.prepared import writable_data_cache

from .domains import DomainData, load_domains, load_tokenizer
from .prepare import Preparer, PrepStats

DEFAULT_LENGTH = 128  # windows' starts are cached for the longest length the plan reads; this when it names none


@dataclass(frozen=True)
class Prepared:
    domains: list[DomainData]
    stats: PrepStats
    cache_dir: Path


def longest_length(plan: Plan) -> int:
    lengths = [getattr(stage.params, key) for stage in plan.stages if hasattr(stage, "params")
               for key in ("seq_len", "calibration_seq_len") if hasattr(stage.params, key)]
    return max(lengths, default=DEFAULT_LENGTH)


def prepare_ahead(plan: Plan, plan_dir: Path) -> Prepared:
    tokenizer = load_tokenizer(plan.data.tokenizer, plan_dir, plan.source.trust_remote_code)
    cache_dir = writable_data_cache()
    preparer = Preparer(tokenizer, plan.data.text_field, cache_dir)
    domains = load_domains(plan.data, base_dir=plan_dir, tokenizer=tokenizer, seq_len=longest_length(plan),
                           seed=plan.runtime.seed, cache_dir=cache_dir, preparer=preparer)
    return Prepared(domains, preparer.stats, cache_dir)
