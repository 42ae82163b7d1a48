"""Which sequences make up each batch: domains drawn by the mixer's weights.

Every rank draws the same global batch from (seed, step), so all ranks agree on
each domain's position, and each rank reads only its own contiguous block of rows:
disjoint data with no communication, and a rank's micro-batches are exactly those a
single process would make of the same block. A domain that runs out starts a new, reshuffled epoch with a
warning; the run goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .domains import DomainData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    input_ids: np.ndarray  # [local rows, seq_len]
    domains: np.ndarray  # domain index of each local row


class MixtureSampler:
    def __init__(self, domains: list[DomainData], seed: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.domains, self.seed, self.rank, self.world_size = domains, seed, rank, world_size
        self.step = 0
        self.cursors = [0] * len(domains)
        self.epochs = [0] * len(domains)
        self.tokens = np.zeros(len(domains), dtype=np.int64)  # tokens drawn per domain, all ranks together
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def _order(self, domain: int) -> np.ndarray:
        key = (domain, self.epochs[domain])
        if key not in self._orders:
            rng = np.random.default_rng([self.seed, domain, self.epochs[domain]])
            self._orders = {k: v for k, v in self._orders.items() if k[0] != domain}
            self._orders[key] = rng.permutation(len(self.domains[domain].train))
        return self._orders[key]

    def _take(self, domain: int) -> int:
        if self.cursors[domain] == len(self.domains[domain].train):
            self.epochs[domain] += 1
            self.cursors[domain] = 0
            log.warning("domain %r ran out of data after %d sequences; starting epoch %d",
                        self.domains[domain].name, len(self.domains[domain].train), self.epochs[domain] + 1)
        index = self._order(domain)[self.cursors[domain]]
        self.cursors[domain] += 1
        return int(index)

    def next_batch(self, weights: np.ndarray, global_batch: int) -> Batch:
        if global_batch % self.world_size:
            raise ValueError(f"global batch {global_batch} does not split over {self.world_size} ranks")
        weights = np.clip(np.asarray(weights, dtype=np.float64), 0, None)
        weights = weights / weights.sum()
        rng = np.random.default_rng([self.seed, self.step, 1])
        chosen = rng.choice(len(self.domains), size=global_batch, p=weights)
        rows = [(domain, self._take(domain)) for domain in chosen]
        share = global_batch // self.world_size
        mine = rows[self.rank * share:(self.rank + 1) * share]
        np.add.at(self.tokens, chosen, self.domains[0].seq_len)
        self.step += 1
        input_ids = np.stack([self.domains[d].train[i] for d, i in mine]).astype(np.int64)
        return Batch(input_ids=input_ids, domains=np.array([d for d, _ in mine]))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "cursors": list(self.cursors), "epochs": list(self.epochs),
                "tokens": self.tokens.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.cursors, self.epochs = list(state["cursors"]), list(state["epochs"])
        self.tokens = np.asarray(state["tokens"], dtype=np.int64)
