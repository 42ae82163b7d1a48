"""Find a domain's files and read their documents.

JSON lines (.jsonl, .json) and parquet read the plan's text field; anything else is plain text, one
document per line; any of them may be gzipped. Globs are expanded relative to the plan file.

pyarrow reads them (the engine `datasets` uses under its builders): importing and setting up `datasets`
took 2.6 s here, longer than tokenizing the real-model tier's whole corpus, and its Arrow cache would
copy every corpus on disk once more. A .json file holding one array, which pyarrow's reader refuses,
goes to `datasets`' JSON builder.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from shearc.compiler.data_cost import matching_files
from shearc.errors import UserError

_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def expand(patterns: list[str], base: Path) -> list[Path]:
    """Files matched by `patterns` (relative to `base`), sorted, each once: what compile found."""
    return matching_files(base, patterns)


def builder_for(path: Path) -> str:
    suffixes = "".join(path.suffixes[-2:]).lower()
    for suffix, builder in _BUILDERS.items():
        if suffixes.endswith(suffix) or suffixes.endswith(suffix + ".gz"):
            return builder
    return "text"


def _unreadable(path: Path, builder: str, exc: BaseException) -> UserError:
    return UserError(f"{path}: cannot read as {builder}: {exc or type(exc).__name__}", title="unreadable training data")


def _column(path: Path, builder: str, field: str) -> list:
    import pyarrow.json
    import pyarrow.parquet

    try:
        if builder == "parquet":
            table = pyarrow.parquet.read_table(path)
        else:
            try:
                table = pyarrow.json.read_json(path)
            except Exception:  # one JSON document (an array of records): pyarrow reads lines only
                table = _json_document(path)
    except UserError:
        raise
    except Exception as exc:
        raise _unreadable(path, builder, exc) from None
    if field not in table.column_names:
        raise UserError(f"{path}: no field {field!r} (fields: {', '.join(table.column_names)}); set data.text_field",
                        title="unreadable training data")
    return table.column(field).to_pylist()


def _json_document(path: Path):
    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()
    try:
        return load_dataset("json", data_files=[str(path)], split="train", streaming=False,
                            keep_in_memory=True).data.table
    except Exception as exc:
        raise _unreadable(path, "json", exc) from None


def file_documents(path: Path, text_field: str) -> list[str]:
    """A file's documents in order (empty or non-text values skipped); a file without the field is a clear error."""
    if path.stat().st_size == 0:
        return []
    builder = builder_for(path)
    if builder == "text":
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8") as handle:
                values: list = handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise _unreadable(path, builder, exc) from None
    else:
        values = _column(path, builder, text_field)
    return [text for text in values if isinstance(text, str) and text]
