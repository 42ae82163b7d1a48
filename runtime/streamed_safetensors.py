"""Safetensors files written a tensor at a time, as save_pretrained lays a model out, without holding a file's tensors.

    write_as_save_pretrained(shapes, dtype, read, directory, shard_bytes=..., index_metadata=...)

`save_file` takes every tensor of a file at once; a model saved in one 5 GB file (save_pretrained's default
shard) would be held whole beside the rest of the run. A safetensors file is its header (the names, dtypes, shapes
and byte offsets: known from the planned shapes before any tensor is read) followed by the tensors' bytes, so
it can be written one tensor at a time. The header is laid out as the safetensors library writes it: compact JSON,
the metadata first, then the tensors in the order their bytes follow (by dtype, the library's order, then by
name), padded with spaces to a multiple of 8 bytes after its 8-byte little-endian length. The export test
compares the files with save_pretrained's byte for byte.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .dense_shards import SINGLE_FILE, shard_name, write_index

# safetensors' names for torch dtypes, in the order of its Dtype enum: a file holds its largest first (its sort)
DTYPE_NAMES = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.float16: "F16",
               torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32", torch.float64: "F64",
               torch.int64: "I64"}
_ENUM_ORDER = {name: index for index, name in enumerate(
    ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"])}


def save_pretrained_groups(sizes: Sequence[tuple[str, int]], shard_bytes: int) -> list[list[str]]:
    """The names of each file, in save_pretrained's order (huggingface_hub's split_torch_state_dict_into_shards):
    a tensor larger than a shard alone in a file of its own, written when it comes while the shard being filled
    goes on filling; the next file begun when a tensor would take the one filling past `shard_bytes`."""
    files: list[list[str]] = []
    pending: list[str] = []
    size = 0
    for name, nbytes in sizes:
        if nbytes > shard_bytes:
            files.append([name])
            continue
        if pending and size + nbytes > shard_bytes:
            files.append(pending)
            pending, size = [], 0
        pending.append(name)
        size += nbytes
    if pending:
        files.append(pending)
    return files


def header(entries: Sequence[tuple[str, torch.dtype, Sequence[int]]], metadata: Mapping[str, str]
           ) -> tuple[bytes, list[str]]:
    """The header bytes (its length first) of a file of `entries` (name, dtype, shape), and the names in the order
    their bytes follow it."""
    ordered = sorted(entries, key=lambda entry: (-_ENUM_ORDER[DTYPE_NAMES[entry[1]]], entry[0]))
    described: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}  # none: no entry
    offset = 0
    for name, dtype, shape in ordered:
        nbytes = _nbytes(dtype, shape)
        described[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(described, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, [name for name, _, _ in ordered]


def write_file(path: Path, entries: Sequence[tuple[str, torch.dtype, Sequence[int]]],
               read: Callable[[str], torch.Tensor], metadata: Mapping[str, str]) -> None:
    """One safetensors file of `entries`, each tensor asked of `read` in turn and written before the next; a tensor
    not of its entry's dtype and shape is refused (ValueError), before its bytes are written."""
    described = {name: (dtype, tuple(shape)) for name, dtype, shape in entries}
    head, order = header(entries, metadata)
    with open(path, "wb") as file:
        file.write(head)
        for name in order:
            tensor = read(name)
            if (tensor.dtype, tuple(tensor.shape)) != described[name]:
                raise ValueError(f"{name} {list(tensor.shape)} {tensor.dtype}, planned "
                                 f"{list(described[name][1])} {described[name][0]}")
            file.write(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().data)


def write_as_save_pretrained(shapes: Mapping[str, Sequence[int]], dtype: torch.dtype,
                             read: Callable[[str], torch.Tensor], directory: Path, *, shard_bytes: int,
                             index_metadata: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The tensors of `shapes` (in save_pretrained's order, each in `dtype`, asked of `read` one at a time) into
    `directory` as save_pretrained writes them: one `model.safetensors`, or numbered shards with their index. The
    weight map."""
    sizes = [(name, _nbytes(dtype, shape)) for name, shape in shapes.items()]
    groups = save_pretrained_groups(sizes, shard_bytes)
    names = [SINGLE_FILE] if len(groups) == 1 else [shard_name(n + 1, len(groups)) for n in range(len(groups))]
    weight_map = {}
    for file_name, group in zip(names, groups, strict=True):
        write_file(directory / file_name, [(name, dtype, shapes[name]) for name in group], read, {"format": "pt"})
        weight_map.update(dict.fromkeys(group, file_name))
    if len(groups) > 1:
        write_index(directory, weight_map, sum(size for _, size in sizes), index_metadata)
    return weight_map


def _nbytes(dtype: torch.dtype, shape: Sequence[int]) -> int:
    return math.prod(shape) * dtype.itemsize

