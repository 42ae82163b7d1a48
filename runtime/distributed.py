"""torch.distributed for `torchrun ... -m shearc.cli run plan.json`: one process per device.

Data parallel (DDP): every rank holds the model, reads its own rows of each global batch,
and averages gradients; parameters outside the model (hard-concrete masks and multipliers)
are averaged here. The mixer's decision is rank 0's, broadcast; only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
import torch.distributed as dist


def initialize() -> tuple[int, int]:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return rank(), world_size()


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Mean of each gradient over ranks (for parameters DDP does not manage)."""
    if not active():
        return
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= world_size()


def from_main(values: np.ndarray) -> np.ndarray:
    """Rank 0's copy of `values`, on every rank."""
    if not active():
        return values
    tensor = torch.as_tensor(np.asarray(values, dtype=np.float64))
    dist.broadcast(tensor, src=0)
    return tensor.numpy()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around `model` when more than one process runs; the model itself otherwise."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
