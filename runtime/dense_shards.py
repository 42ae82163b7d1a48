"""The dense model on disk, as finalize makes it: safetensors shards written tensor by tensor, read tensor by tensor.

    RUN_DIR/dense/
        model-00001-of-00003.safetensors ...   the dense weights in fp32 (slicing.dense_tensors), tied ones once
        model.safetensors.index.json           Hugging Face's index: the file of every tensor, the total size

A shard is written as soon as it holds SHARD_BYTES (or one larger tensor), so writing the dense model costs the
memory of one shard, not of the model; the directory appears whole or not at all (atomic_directory). Reading
opens the shard for each tensor and closes it again, so no mapping of the files stays resident: a model streamed
from here (models.streamed_dense) holds one module's weights at a time. The export stage writes the exported model
the same way (write_shards_into: into the directory it publishes, named as save_pretrained names the files).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from shearc.canonical import atomic_directory

INDEX = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"  # save_pretrained's name for a model in one shard
SHARD_BYTES = 64 * 2**20  # small against any model worth pruning, large enough that files stay few (16 per GiB)


def _shard_name(number: int, count: int) -> str:
    return f"model-{number:05d}-of-{count:05d}.safetensors"


def write_shards(tensors: Iterable[tuple[str, torch.Tensor]], directory: Path, *,
                 shard_bytes: int | None = None) -> dict[str, str]:
    """Write `tensors` (in order) as safetensors shards of `shard_bytes` (SHARD_BYTES) with their index into
    `directory`, replacing it whole; the weight map (tensor -> file)."""
    with atomic_directory(directory) as staging:
        written = write_shards_into(tensors, staging, shard_bytes=shard_bytes)
    return written


def write_shards_into(tensors: Iterable[tuple[str, torch.Tensor]], directory: Path, *,
                      shard_bytes: int | None = None, as_save_pretrained: bool = False,
                      index_metadata: Mapping[str, Any] | None = None) -> dict[str, str]:
    """write_shards into `directory` as it is, beside what it holds (a directory the caller publishes whole, as
    export does). `as_save_pretrained`: the shards laid out as transformers' save_pretrained lays them out (by
    huggingface_hub's split_torch_state_dict_into_shards): a tensor larger than a shard alone in a shard of its own,
    written when it comes while the shard being filled goes on filling, and a single shard named model.safetensors,
    with no index. `index_metadata`: more entries for the index's metadata, beside total_size."""
    shard_bytes = shard_bytes or SHARD_BYTES
    files: list[list[str]] = []
    pending: dict[str, torch.Tensor] = {}
    size = total = 0

    def write(shard: dict[str, torch.Tensor]) -> None:
        save_file(shard, directory / f"part-{len(files):05d}.safetensors", metadata={"format": "pt"})
        files.append(list(shard))

    for key, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        total += nbytes
        if as_save_pretrained and nbytes > shard_bytes:
            write({key: tensor.contiguous()})
            continue
        if pending and size + nbytes > shard_bytes:
            write(pending)
            pending, size = {}, 0
        pending[key] = tensor.contiguous()
        size += nbytes
    if pending:
        write(pending)
    if as_save_pretrained and len(files) == 1:
        os.replace(directory / "part-00000.safetensors", directory / SINGLE_FILE)
        return dict.fromkeys(files[0], SINGLE_FILE)
    weight_map = {}
    for number, keys in enumerate(files):  # numbered once their count is known, as Hugging Face names them
        name = _shard_name(number + 1, len(files))
        os.replace(directory / f"part-{number:05d}.safetensors", directory / name)
        weight_map.update(dict.fromkeys(keys, name))
    index = {"metadata": {**(index_metadata or {}), "total_size": total}, "weight_map": weight_map}
    (directory / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return weight_map


def weight_map(directory: Path) -> dict[str, str]:
    """Which file holds each tensor: from the index, or every tensor of a lone `model.safetensors` (a source model
    small enough for one file)."""
    if not (directory / INDEX).is_file() and (directory / SINGLE_FILE).is_file():
        with safe_open(directory / SINGLE_FILE, framework="pt") as single:
            return dict.fromkeys(single.keys(), SINGLE_FILE)
    return json.loads((directory / INDEX).read_text(encoding="utf-8"))["weight_map"]


def load_shards(directory: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Every tensor of `directory`, in memory."""
    state = {}
    for name in sorted(set(weight_map(directory).values())):
        state.update(load_file(directory / name, device=str(device)))
    return state


class ShardedWeights(Mapping[str, torch.Tensor]):
    """The tensors of a directory write_shards wrote, each read from its shard when asked for (nothing cached).

    `aliases` answers other names with a stored tensor's (a tied output head with the embedding); `transform`, given
    the stored name and the tensor, changes what is handed out (the finalize check's channel permutation)."""

    def __init__(self, directory: Path, aliases: Mapping[str, str] | None = None,
                 transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None) -> None:
        self.directory, self.aliases, self.transform = directory, dict(aliases or {}), transform
        self.files = weight_map(directory)

    def with_transform(self, transform: Callable[[str, torch.Tensor], torch.Tensor]) -> ShardedWeights:
        return ShardedWeights(self.directory, self.aliases, transform)

    def __getitem__(self, key: str) -> torch.Tensor:
        stored = self.aliases.get(key, key)
        with safe_open(self.directory / self.files[stored], framework="pt") as shard:
            tensor = shard.get_tensor(stored)
        return tensor if self.transform is None else self.transform(stored, tensor)

    def __iter__(self) -> Iterator[str]:
        return iter([*self.files, *(alias for alias in self.aliases if alias not in self.files)])

    def __len__(self) -> int:
        return len(list(iter(self)))
