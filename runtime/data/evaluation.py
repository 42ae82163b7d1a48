"""Per-domain eval loss: the token-weighted mean cross-entropy over each domain's eval stream.

The stream is cut into `seq_len` windows that begin as the plan says (windows.py; the last one may be
shorter); every predicted token counts once, so a short window weighs less than a full one. The loss
is made a chunk of logits at a time (runtime/loss.py). Under torch.distributed each rank evaluates
its share of windows and the sums are all-reduced.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.distributed.tensor import DTensor

from ..loss import sequence_losses
from .domains import DomainData


@torch.no_grad()
def domain_eval_losses(model: torch.nn.Module, domains: list[DomainData], *, seq_len: int, max_sequences: int,
                       batch_size: int, device: torch.device | str = "cpu") -> np.ndarray:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    was_training = model.training
    model.eval()
    totals = torch.zeros(len(domains), 2, dtype=torch.float64, device=device)  # [loss sum, token count]
    forwards = 0
    for index, domain in enumerate(domains):
        windows = domain.eval_windows(seq_len, max_sequences)
        forwards += _batches(windows[rank::world], batch_size) - max(
            _batches(windows[other::world], batch_size) for other in range(world))
        for batch in _batched(windows[rank::world], batch_size):
            ids = torch.as_tensor(np.stack(batch).astype(np.int64), device=device)
            losses = sequence_losses(model, ids)
            totals[index, 0] += losses.mean.double() * ids[:, 1:].numel()
            totals[index, 1] += ids[:, 1:].numel()
    if any(isinstance(p, DTensor) for p in model.parameters()):
        # FSDP2 gathers each block's weights in every forward, all processes together: one with fewer windows
        # runs forwards it does not count until each has run as many as the most
        spare = torch.as_tensor(np.stack([domains[0].eval_windows(seq_len, 1)[0]]).astype(np.int64), device=device)
        for _ in range(-forwards):
            sequence_losses(model, spare)
    if distributed:
        torch.distributed.all_reduce(totals)
    model.train(was_training)
    if bool((totals[:, 1] == 0).any()):  # load_domains refuses empty eval sets; this guards direct callers
        empty = [domains[i].name for i in torch.nonzero(totals[:, 1] == 0).flatten().tolist()]
        raise ValueError(f"no eval tokens for domains {empty}")
    return (totals[:, 0] / totals[:, 1]).cpu().numpy()


def _batched(windows: list[np.ndarray], batch_size: int) -> list[list[np.ndarray]]:
    """`windows` in batches of at most `batch_size`, windows of one length together."""
    by_length: dict[int, list[np.ndarray]] = {}
    for window in windows:
        by_length.setdefault(len(window), []).append(window)
    return [group[start:start + batch_size] for group in by_length.values()
            for start in range(0, len(group), batch_size)]


def _batches(windows: list[np.ndarray], batch_size: int) -> int:
    return len(_batched(windows, batch_size))
