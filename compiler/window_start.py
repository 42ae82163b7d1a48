"""How every window of text begins: as the source's tokenizer begins a text.

    data: {window_bos: null}    # default: decided from the tokenizer (BOS in front where it puts BOS in
                                # front of a text: Gemma, Llama 2 and 3, Mistral; nothing where it does not)
    data: {window_bos: false}   # or true: the spec decides

Packed windows begin in the middle of documents. A model whose tokenizer puts BOS in front of
every text has never computed without it at position 0 (a real Gemma 3 reads its eval windows
1.5 to 2.3 nats worse without), so training, calibration, evaluation and the finalize check all
see windows that begin with it. Decided once at compile time from the source's tokenizer and
written into the plan (`data.window_bos`, and how it was decided in `data.window_bos_origin`);
where compile finds no tokenizer (a config card), the family's usual tokenizer decides and the
plan warns. The runtime checks the tokenizer it loads against the plan (`window_start_problems`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from shearc.errors import Problem

from .families import FamilyAdapter

Origin = Literal["tokenizer", "spec", "family"]
PROBE_TEXT = "The window begins here."


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts its BOS token in front of a text it encodes."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    with_specials = tokenizer(PROBE_TEXT)["input_ids"]
    without = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    return bool(with_specials) and with_specials[0] == bos and without[:1] != [bos]


@lru_cache(maxsize=16)
def _load(source: str, trust_remote_code: bool, stamp: float) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=True)


def find_tokenizer(reference: str, base_dir: Path, trust_remote_code: bool) -> Any | None:
    """The tokenizer in a local directory (relative to `base_dir`) or the local Hugging Face cache; None when
    neither has it (compile never downloads)."""
    local = base_dir / os.path.expanduser(reference)
    source = str(local.resolve()) if local.is_dir() else reference
    stamp = max((p.stat().st_mtime for p in local.iterdir() if p.is_file()), default=0.0) if local.is_dir() else 0.0
    try:
        return _load(source, trust_remote_code, stamp)
    except Exception:  # no tokenizer files here, not cached, not a repo id: the caller falls back
        return None


@dataclass(frozen=True)
class WindowStart:
    bos: int | None  # the token every window begins with; None: windows begin with the text's own tokens
    origin: Origin
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"window_bos": self.bos, "window_bos_origin": self.origin}


def decide(choice: bool | None, tokenizer: Any | None, config: dict[str, Any], adapter: FamilyAdapter
           ) -> WindowStart | Problem:
    """The plan's window start from the spec's `data.window_bos`, else the tokenizer, else the family."""
    bos = tokenizer.bos_token_id if tokenizer is not None else config.get("bos_token_id")
    if isinstance(bos, list):  # some configs list several; a tokenizer has one
        bos = bos[0] if bos else None
    if choice is not None:
        if choice and bos is None:
            where = "the tokenizer" if tokenizer is not None else "the source's config (no tokenizer found)"
            return Problem(f"windows cannot begin with BOS: {where} names no BOS token", "data.window_bos")
        return WindowStart(bos if choice else None, "spec")
    if tokenizer is not None:
        return WindowStart(bos if adds_bos(tokenizer) else None, "tokenizer")
    begins = adapter.text_begins_with_bos and bos is not None
    what = f"BOS (token {bos})" if begins else "the text's own tokens"
    return WindowStart(bos if begins else None, "family", warning=(
        f"no tokenizer found at compile time: windows begin with {what}, as {adapter.architecture} tokenizers "
        "usually begin a text; the run refuses a tokenizer that begins texts otherwise (data.window_bos decides "
        "it here)"))


def window_start_problems(window_bos: int | None, origin: Origin, tokenizer: Any, where: str) -> list[Problem]:
    """What the run's tokenizer says against the plan's decision: empty when they agree."""
    adds = adds_bos(tokenizer)
    if origin != "spec" and adds != (window_bos is not None):
        does = "puts BOS in front of a text" if adds else "puts nothing in front of a text"
        planned = f"begin with BOS (token {window_bos})" if window_bos is not None else "begin without BOS"
        return [Problem(f"the tokenizer {does}, but the plan's windows {planned}; recompile the spec with this "
                        "tokenizer in place (or set data.window_bos)", "data.window_bos", where)]
    if window_bos is not None and tokenizer.bos_token_id != window_bos:
        return [Problem(f"the plan's windows begin with token {window_bos}, the tokenizer's BOS is "
                        f"{tokenizer.bos_token_id}; recompile the spec with this tokenizer in place",
                        "data.window_bos", where)]
    return []
