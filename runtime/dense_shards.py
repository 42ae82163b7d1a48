"""The dense model on disk, as finalize makes it: safetensors shards written tensor by tensor, read tensor by tensor.

    RUN_DIR/dense/
        model-00001-of-00003.safetensors ...   the dense weights in fp32 (slicing.dense_tensors), tied ones once
        model.safetensors.index.json           Hugging Face's index: the file of every tensor, the total size

A shard is written as soon as it holds SHARD_BYTES (or one larger tensor), so writing the dense model costs the
memory of one shard, not of the model; the directory appears whole or not at all (atomic_directory). Reading
opens the shard for each tensor and closes it again, so no mapping of the files stays resident: a model streamed
from here (models.streamed_dense) holds one module's weights at a time. The export stage writes the exported model
a tensor at a time too (streamed_safetensors.py), laid out as save_pretrained lays it out.
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


def shard_name(number: int, count: int) -> str:
    return f"model-{number:05d}-of-{count:05d}.safetensors"


def write_shards(tensors: Iterable[tuple[str, torch.Tensor]], directory: Path, *,
                 shard_bytes: int | None = None) -> dict[str, str]:
    """Write `tensors` (in order) as safetensors shards of `shard_bytes` (SHARD_BYTES) with their index into
    `directory`, replacing it whole; the weight map (tensor -> file)."""
    with atomic_directory(directory) as staging:
        written = write_shards_into(tensors, staging, shard_bytes=shard_bytes)
    return written


def write_shards_into(tensors: Iterable[tuple[str, torch.Tensor]], directory: Path, *,
                      shard_bytes: int | None = None) -> dict[str, str]:
    """write_shards into `directory` as it is, beside what it holds (a staging directory the caller publishes
    whole)."""
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
        if pending and size + nbytes > shard_bytes:
            write(pending)
            pending, size = {}, 0
        pending[key] = tensor.contiguous()
        size += nbytes
    if pending:
        write(pending)
    weight_map = {}
    for number, keys in enumerate(files):  # numbered once their count is known, as Hugging Face names them
        name = shard_name(number + 1, len(files))
        os.replace(directory / f"part-{number:05d}.safetensors", directory / name)
        weight_map.update(dict.fromkeys(keys, name))
    write_index(directory, weight_map, total)
    return weight_map


def write_index(directory: Path, weight_map: Mapping[str, str], total: int,
                metadata: Mapping[str, Any] | None = None) -> None:
    """Hugging Face's index of shards: `metadata`'s entries and the total size, and the file of every tensor."""
    index = {"metadata": {**(metadata or {}), "total_size": total}, "weight_map": dict(weight_map)}
    (directory / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


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

    def shape(self, key: str) -> torch.Size:
        """`key`'s shape, from its file's header (no tensor read)."""
        stored = self.aliases.get(key, key)
        with safe_open(self.directory / self.files[stored], framework="pt") as shard:
            return torch.Size(shard.get_slice(stored).get_shape())

    def row_blocks(self, key: str, block_bytes: int = 16 * 2**20) -> Iterator[tuple[int, torch.Tensor]]:
        """`key`'s tensor as (first row, rows) blocks of about `block_bytes` each, without `transform`: what a check
        compares a large tensor by. Its file is opened for each block, so only that block's pages are ever mapped
        (kept open, the pages read would stay resident until the whole tensor had been read)."""
        stored = self.aliases.get(key, key)
        path = self.directory / self.files[stored]
        with safe_open(path, framework="pt") as shard:
            part = shard.get_slice(stored)
            shape = part.get_shape()
            if not shape:
                yield 0, shard.get_tensor(stored)
                return
            first = part[0:1]
            rows = max(1, block_bytes // max(1, first.numel() * first.element_size()))
        for start in range(0, shape[0], rows):
            with safe_open(path, framework="pt") as shard:
                block = shard.get_slice(stored)[start:start + rows]
            yield start, block

    def __iter__(self) -> Iterator[str]:
        return iter([*self.files, *(alias for alias in self.aliases if alias not in self.files)])

    def __len__(self) -> int:
        return len(list(iter(self)))
