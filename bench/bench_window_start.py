"""What the start of a window costs: each real checkpoint's per-domain source loss on the same eval stream cut
into windows with BOS in front, and without (the references' windows); shearc uses the first where the
tokenizer puts BOS in front of a text, the second where it does not.

    .venv/bin/python bench/bench_window_start.py

On the real tier's two checkpoints (tests/real/assets.py) and its three text domains, through shearc's own
data loading and eval loss (the held-out tenth of the documents, 16 windows of 128 tokens per domain, fp32).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WINDOWS, SEQ_LEN = 16, 128


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shearc.compiler.window_start import adds_bos
    from shearc.runtime.data import domain_eval_losses, load_domains
    from tests.helpers import data_plan
    from tests.real.assets import GEMMA3, SMOLLM2, real_model, write_text_domains

    print("| checkpoint | its tokenizer puts BOS in front | domain | windows with BOS first | without | "
          "without - with |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        text = write_text_domains(work / "text")
        for checkpoint in (SMOLLM2, GEMMA3):
            model_dir = real_model(checkpoint)
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
            begins = adds_bos(tokenizer)
            losses = {}
            for bos in (tokenizer.bos_token_id, None):
                data = data_plan(*({"name": name, "train": [str(path)], "eval": []} for name, path in text.items()),
                                 eval_fraction=0.1, window_bos=bos)
                domains = load_domains(data, base_dir=work, tokenizer=tokenizer, seq_len=SEQ_LEN, seed=0,
                                       cache_dir=work / checkpoint.folder)
                losses[bos] = domain_eval_losses(model, domains, seq_len=SEQ_LEN, max_sequences=WINDOWS,
                                                 batch_size=4)
            with_bos, without = losses[tokenizer.bos_token_id], losses[None]
            for number, name in enumerate(text):
                print(f"| {checkpoint.folder} | {'yes' if begins else 'no'} | {name} | {with_bos[number]:.3f} | "
                      f"{without[number]:.3f} | {without[number] - with_bos[number]:+.3f} |")


if __name__ == "__main__":
    main()
