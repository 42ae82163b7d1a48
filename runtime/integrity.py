"""Whether a weights or state file is whole, cheaply: headers and lengths, no tensor read."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file (its header unreadable, or its length short of what the header
    describes), or None."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or length > size - 8:
                raise ValueError("its header is cut short")
            header = json.loads(handle.read(length))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return f"not a readable safetensors file ({exc})"
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return f"truncated: {size:,} bytes where its header describes {expected:,}"
    return None


def torch_save_problem(path: Path) -> str | None:
    """What is wrong with a torch.save file (a zip archive whose directory sits at its end: a file cut short has
    none), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        return f"not a readable torch.save file ({exc})"
    return None
