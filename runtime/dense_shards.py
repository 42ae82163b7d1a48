"""The dense model on disk, as finalize makes it: safetensors shards written tensor by tensor, read tensor by tensor.

    RUN_DIR/dense/
        model-00001-of-00003.safetensors ...   the dense weights in fp32 (slicing.dense_tensors), tied ones once
        model.safetensors.index.json           Hugging Face's index: the file of every tensor, the total size

A shard is written as soon as it holds SHARD_BYTES (or one larger tensor), so writing the dense model costs the
memory of one shard, not of the model; the directory appears whole or not at all (atomic_directory). Reading
opens the shard for each tensor and closes it again, so no mapping of the files stays resident: a model streamed
from here (models.streamed_dense) holds one module's weights at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from shearc.canonical import atomic_directory

INDEX = "model.safetensors.index.json"
SHARD_BYTES = 64 * 2**20  # small against any model worth pruning, large enough that files stay few (16 per GiB)


def _shard_name(number: int, count: int) -> str:
    return f"model-{number:05d}-of-{count:05d}.safetensors"


def write_shards(tensors: Iterable[tuple[str, torch.Tensor]], directory: Path, *,
                 shard_bytes: int | None = None) -> dict[str, str]:
    """Write `tensors` (in order) as safetensors shards of `shard_bytes` (SHARD_BYTES) with their index into
    `directory`, replacing it whole; the weight map (tensor -> file)."""
    shard_bytes = shard_bytes or SHARD_BYTES
    with atomic_directory(directory) as staging:
        files: list[list[str]] = []
        pending: dict[str, torch.Tensor] = {}
        size = total = 0

        def flush() -> None:
            nonlocal pending, size
            if pending:
                save_file(pending, staging / f"part-{len(files):05d}.safetensors", metadata={"format": "pt"})
                files.append(list(pending))
                pending, size = {}, 0

        for key, tensor in tensors:
            nbytes = tensor.numel() * tensor.element_size()
            if pending and size + nbytes > shard_bytes:
                flush()
            pending[key] = tensor.contiguous()
            size += nbytes
            total += nbytes
        flush()
        weight_map = {}
        for number, keys in enumerate(files):  # numbered once their count is known, as Hugging Face names them
            name = _shard_name(number + 1, len(files))
            os.replace(staging / f"part-{number:05d}.safetensors", staging / name)
            weight_map.update(dict.fromkeys(keys, name))
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (staging / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return weight_map


def weight_map(directory: Path) -> dict[str, str]:
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
