"""Find a domain's files and read their documents with `datasets`.

JSON lines (.jsonl, .json) and parquet read the plan's text field; anything else
is plain text, one document per line. Globs are expanded relative to the plan file.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path

from shearc.errors import UserError

_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def expand(patterns: list[str], base: Path) -> list[Path]:
    """Files matched by `patterns` (relative to `base`), sorted, each once."""
    found: set[Path] = set()
    for pattern in patterns:
        full = os.path.join(base, os.path.expanduser(pattern))
        found.update(Path(p) for p in glob.glob(full, recursive=True) if os.path.isfile(p))
    return sorted(found)


def builder_for(path: Path) -> str:
    suffixes = "".join(path.suffixes[-2:]).lower()
    for suffix, builder in _BUILDERS.items():
        if suffixes.endswith(suffix) or suffixes.endswith(suffix + ".gz"):
            return builder
    return "text"


def read_documents(files: list[Path], text_field: str, cache_dir: Path) -> Iterator[str]:
    """Documents in file order; a file without the text field is a clear error."""
    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()
    for path in files:
        if path.stat().st_size == 0:  # datasets raises a bare StopIteration on an empty JSON file
            continue
        builder = builder_for(path)
        try:
            dataset = load_dataset(builder, data_files=[str(path)], split="train", cache_dir=str(cache_dir))
        except Exception as exc:
            raise UserError(f"{path}: cannot read as {builder}: {exc or type(exc).__name__}",
                            title="unreadable training data") from None
        field = "text" if builder == "text" else text_field
        if field not in dataset.column_names:
            raise UserError(f"{path}: no field {field!r} (fields: {', '.join(dataset.column_names)}); "
                            f"set data.text_field", title="unreadable training data")
        for text in dataset[field]:
            if isinstance(text, str) and text:
                yield text
