"""torch.distributed for `torchrun ... -m shearc.cli run plan.json`: one process per device.

Data parallel (runtime.strategy: ddp): every rank holds the model, reads its own rows of each
global batch, and averages gradients. Sharded (fsdp2): each decoder block and the root are
`fully_shard`-ed, so parameters, gradients and optimizer states are split over ranks; a
checkpoint is written by every rank, its own shards (torch.distributed.checkpoint). After pruning the
models stay sharded (sharded_model reads one into its shards from files); whole weights are gathered one
tensor at a time where a file is written, and whole only where LoRA's adapters are merged.
Either way, parameters outside the model (hard-concrete masks and multipliers) are replicated and
averaged here, the mixer's decision is rank 0's, broadcast, and only rank 0 writes other files.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .memory import trim_heap


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


def _collective_tensor(values: np.ndarray) -> torch.Tensor:
    """`values` as float64 on the device the backend communicates from (NCCL takes CUDA tensors only)."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    return torch.as_tensor(np.asarray(values, dtype=np.float64), device=device)


def from_main(values: np.ndarray) -> np.ndarray:
    """Rank 0's copy of `values`, on every rank."""
    if not active():
        return values
    tensor = _collective_tensor(values)
    dist.broadcast(tensor, src=0)
    return tensor.cpu().numpy()


def summed(values: np.ndarray) -> np.ndarray:
    """The elementwise sum of every rank's `values`, on every rank."""
    if not active():
        return values
    tensor = _collective_tensor(values)
    dist.all_reduce(tensor)
    return tensor.cpu().numpy()


def wrap(model: torch.nn.Module, device: torch.device, strategy: str = "ddp",
         blocks: Iterable[torch.nn.Module] = ()) -> torch.nn.Module:
    """The module to run forward through: DDP around `model`, or `model` itself sharded in place
    (FSDP2, block by block), when more than one process runs; `model` unchanged otherwise."""
    if not active():
        return model
    if strategy == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        if any_sharded(model):  # sharded as it was read (sharded_model): nothing whole to shard, but a forward
            return resharded(model)  # (the mixer's reference losses) leaves the root's weights gathered
        for block in blocks:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def is_sharded(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of the tensor: its shard if it is sharded, else the whole tensor."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor, gathered from every rank if it is sharded (a collective then). FSDP2's row shards of equal
    size are gathered straight into the whole tensor: DTensor.full_tensor's general path, and gloo's all-gather,
    hold about twice its size on the way (256 MiB for SmolLM2's 113 MiB embedding, measured); over gloo each rank
    broadcasts its rows into their place in turn."""
    if not is_sharded(tensor):
        return tensor
    from torch.distributed.tensor import Shard

    mesh, placements = tensor.device_mesh, tensor.placements
    rows = tensor.shape[0] if tensor.dim() else 0
    if mesh.ndim != 1 or placements != (Shard(0),) or rows % mesh.size():
        return tensor.full_tensor()
    group, part = mesh.get_group(), tensor.to_local()
    whole = torch.empty(tensor.shape, dtype=part.dtype, device=part.device)
    if dist.get_backend(group) != "gloo":
        dist.all_gather_into_tensor(whole, part.contiguous(), group=group)
        return whole
    for index, rows_of_rank in enumerate(whole.chunk(mesh.size())):
        if index == mesh.get_local_rank():
            rows_of_rank.copy_(part)
        dist.broadcast(rows_of_rank, src=dist.get_global_rank(group, index), group=group)
    return whole


class GatheredState(Mapping[str, torch.Tensor]):
    """A model's weights by name, each gathered whole only when asked for: one tensor's worth of memory at a time
    (under FSDP2 a collective per tensor, so every rank must ask for the same names in the same order)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.state = model.state_dict()

    def __getitem__(self, key: str) -> torch.Tensor:
        tensor = self.state[key]
        if is_sharded(tensor) and tensor.device.type == "cpu":  # the tensor gathered before is let go by now: its
            trim_heap()  # memory back before the next (glibc's heap grows through such a loop: trimmed_after_each)
        return full(tensor).detach()

    def __iter__(self) -> Iterator[str]:
        return iter(self.state)

    def __len__(self) -> int:
        return len(self.state)


def held(model: torch.nn.Module) -> dict[str, int]:
    """How much of `model` this process holds: its parameters, the elements it keeps of them (its shards under
    FSDP2) and the number of processes."""
    weights = list(model.parameters())
    return {"params": sum(p.numel() for p in weights), "held_per_process": sum(local(p).numel() for p in weights),
            "processes": world_size()}


def any_sharded(model: torch.nn.Module) -> bool:
    return any(is_sharded(p) for p in model.parameters())


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded weights on every rank (a collective under FSDP2; a plain state_dict otherwise)."""
    return dict(GatheredState(model))


def clip_gradients(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip by the global norm over sharded and replicated gradients together."""
    from torch.nn.utils import clip_grads_with_norm_, get_total_norm

    groups = [[p for p in params if p.grad is not None and is_sharded(p.grad) == sharded] for sharded in (True, False)]
    norms = [full(get_total_norm([p.grad for p in group])).float() for group in groups if group]  # on the device:
    total = torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())  # no host sync
    for group in groups:
        if group:
            clip_grads_with_norm_(group, max_norm, total.to(group[0].grad.device))
    return total


def shard_for_reading(model: torch.nn.Module, layer_prefix: str) -> torch.nn.Module:
    """`model` sharded in place with FSDP2 for forwards only: every rank keeps 1/n of each decoder block and
    gathers one block at a time as it runs. The root's own weights (the embedding, the final norm, the output head)
    stay whole on every rank: gathered, they are held through the whole forward (a tied head is used last) with
    FSDP2's all-gather buffers beside them, more than the shard saves (measured on SmolLM2-135M, whose tied
    embedding is a fifth of it); at a 7B-70B model they are 1-3% of it."""
    from torch.distributed.fsdp import fully_shard

    blocks = model.get_submodule(layer_prefix)
    for block in blocks:
        fully_shard(block)
    inside = {id(p) for p in blocks.parameters()}
    root_own = {p for p in model.parameters() if id(p) not in inside}
    fully_shard(model, reshard_after_forward=True, ignored_params=root_own)
    return model


def resharded(model: torch.nn.Module) -> torch.nn.Module:
    """A model FSDP2 shards, every part let go to its shard: after forwards without a backward the root's weights
    stay gathered, and an optimizer made then would hold the gathered tensors, not the shards."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
    return model


def resharded_for_reading(model: torch.nn.Module) -> torch.nn.Module:
    """A model training sharded (FSDP2), as shard_for_reading leaves one: every part let go to its shard (after an
    evaluation's forwards the root's weights stay whole) and kept so after each forward."""
    from torch.distributed.fsdp import FSDPModule

    for module in resharded(model).modules():
        if isinstance(module, FSDPModule):
            module.set_reshard_after_forward(True)
    return model


def sharded_model(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], layer_prefix: str,
                  dtype: torch.dtype, device: torch.device, *, training: bool = False) -> torch.nn.Module:
    """`model`, built on the meta device (its buffers real), sharded with FSDP2 and filled with `weights` (a lazy
    mapping by state_dict name) in `dtype`: PyTorch's recipe for a model built on the meta device (fully_shard, then
    to_empty: each process allocates its own shards in place), each process then reading one whole tensor at a time
    and copying its rows of it (distribute_tensor with src_data_rank=None: no broadcast), so no process ever holds
    the model whole. Tied weights stay one parameter. For forwards only (shard_for_reading), or, `training`, sharded
    as `wrap` shards a model to train (the root's weights too), its parameters still needing grads."""
    from torch.distributed.tensor import distribute_tensor

    for param in model.parameters():  # on the meta device: allocated below in the dtype read
        param.data = param.data.to(dtype)
    model.tie_weights()  # as the config says (a model built on the meta device is not tied yet)
    buffers = dict(model.named_buffers())  # built for real; to_empty would leave them uninitialised
    if training:
        wrap(model, device, "fsdp2", model.get_submodule(layer_prefix))
    else:
        shard_for_reading(model, layer_prefix)
    model.to_empty(device=device)
    for name, buffer in buffers.items():
        owner, _, attribute = name.rpartition(".")
        model.get_submodule(owner)._buffers[attribute] = buffer.to(device)
    model.tie_weights()
    model.unshard()  # FSDP2's lazy initialisation now, while the shards are empty: it copies each into a padded
    model.reshard()  # buffer of its own, which would hold every shard twice over if it came at the first forward
    with torch.no_grad():
        for name, param in model.named_parameters():  # a tied one once
            whole = weights[name].to(device, dtype)
            if is_sharded(param):
                part = distribute_tensor(whole, param.device_mesh, param.placements, src_data_rank=None)
                param.to_local().copy_(part.to_local())
            else:  # the root's, held whole (shard_for_reading)
                param.copy_(whole)
            del whole
    return model if training else model.requires_grad_(False).eval()


def unsharded(model: torch.nn.Module, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """`model` itself, or, if FSDP2 sharded it, a fresh `build()` holding its gathered weights."""
    if not any_sharded(model):
        return model
    weights = full_state_dict(model)
    whole = build()
    whole.load_state_dict(weights, strict=True)
    return whole


def _owner(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> torch.nn.Module:
    """A module holding `model` and every optimized parameter outside it (hard-concrete's masks and
    multipliers), so each optimizer state has a name in torch.distributed.checkpoint's state dicts."""
    owner = torch.nn.Module()
    owner.model = model
    inside = {id(p) for p in model.parameters()}
    owner.outside = torch.nn.ParameterList(
        [p for group in optimizer.param_groups for p in group["params"] if id(p) not in inside])
    return owner


def save_sharded(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Every rank writes its own shards of the model and the optimizer (if any) under `directory`
    (torch.distributed.checkpoint: no rank gathers the whole; a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = {"model": model.state_dict()}
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(_owner(model, optimizer), optimizer)
    dcp.save(state, checkpoint_id=directory)


def load_sharded_model(directory: Path, model: torch.nn.Module) -> None:
    """The weights save_sharded wrote, into `model` as it is: sharded on any number of ranks (each reads
    its part), or whole in one process with no process group (each tensor assembled from the shards)."""
    import torch.distributed.checkpoint as dcp

    state = {"model": model.state_dict()}
    with warnings.catch_warnings():  # in one process, that it assumes one process is what was asked
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
        dcp.load(state, checkpoint_id=directory, no_dist=not active())
    model.load_state_dict(state["model"], strict=True)


def load_sharded_optimizer(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """The optimizer state save_sharded wrote, each rank reading its shards of it."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    owner = _owner(model, optimizer)
    state = {"optimizer": get_optimizer_state_dict(owner, optimizer)}  # its tensors, shaped and sharded, to fill
    dcp.load(state, checkpoint_id=directory, no_dist=not active())
    set_optimizer_state_dict(owner, optimizer, state["optimizer"])
