"""Per-domain eval loss: the token-weighted mean cross-entropy over each domain's eval stream.

The stream is cut into `seq_len` chunks (the last one may be shorter); every
predicted token counts once, so a short chunk weighs less than a full one. Under
torch.distributed each rank evaluates its share of chunks and the sums are all-reduced.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .domains import DomainData


def eval_chunks(tokens: np.ndarray, seq_len: int, max_sequences: int) -> list[np.ndarray]:
    """At most `max_sequences` chunks; chunks of one token predict nothing and are dropped."""
    chunks = [tokens[start:start + seq_len] for start in range(0, len(tokens), seq_len)][:max_sequences]
    return [chunk for chunk in chunks if len(chunk) > 1]


@torch.no_grad()
def domain_eval_losses(model: torch.nn.Module, domains: list[DomainData], *, seq_len: int, max_sequences: int,
                       batch_size: int, device: torch.device | str = "cpu") -> np.ndarray:
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    was_training = model.training
    model.eval()
    totals = torch.zeros(len(domains), 2, dtype=torch.float64, device=device)  # [loss sum, token count]
    for index, domain in enumerate(domains):
        chunks = eval_chunks(domain.eval, seq_len, max_sequences)[rank::world]
        by_length: dict[int, list[np.ndarray]] = {}
        for chunk in chunks:
            by_length.setdefault(len(chunk), []).append(chunk)
        for group in by_length.values():
            for start in range(0, len(group), batch_size):
                ids = torch.as_tensor(np.stack(group[start:start + batch_size]).astype(np.int64), device=device)
                logits = model(input_ids=ids).logits[:, :-1].float()
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
                totals[index, 0] += loss.double()
                totals[index, 1] += ids[:, 1:].numel()
    if distributed:
        torch.distributed.all_reduce(totals)
    model.train(was_training)
    if bool((totals[:, 1] == 0).any()):  # load_domains refuses empty eval sets; this guards direct callers
        empty = [domains[i].name for i in torch.nonzero(totals[:, 1] == 0).flatten().tolist()]
        raise ValueError(f"no eval tokens for domains {empty}")
    return (totals[:, 0] / totals[:, 1]).cpu().numpy()
