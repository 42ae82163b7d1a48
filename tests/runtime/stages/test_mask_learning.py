"""Hard-concrete pruning with DRPruning mixing moves data to the domain the pruning hurts most."""

import random

import numpy as np
import torch

from shearc.cli import main
from shearc.runtime.metrics import MetricsLog

from ...helpers import WORDS, tiny_project


def _domains():
    rng = random.Random(0)
    return {
        "repeat": [" ".join(["alpha", "beta"] * 10) for _ in range(40)],  # easy
        "cycle": [" ".join(WORDS[(i + j) % 10] for j in range(20)) for i in range(40)],  # medium
        "noise": [" ".join(rng.choice(WORDS) for _ in range(20)) for _ in range(40)],  # hard
    }


def _train_source(model_dir, tokenizer_dir, texts, steps=150):
    """A few steps of plain training, so the source knows its domains before pruning."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = torch.tensor([tokenizer(t)["input_ids"][:16] for t in texts])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = ids[torch.randint(0, len(ids), (16,), generator=generator)]
        model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(model_dir)


def test_drpruning_moves_weight_to_the_domain_pruning_hurts_most(tmp_path):
    domains = _domains()
    prune = {"method": "hard-concrete", "steps": 40, "global_batch": 8, "seq_len": 16, "warmup_steps": 4,
             "eval_interval": 5, "lr": 1e-3, "granularities": ["layer", "head", "intermediate", "hidden"]}
    mixer = {"method": "drpruning", "reference": "source", "fit_reference": False}
    plan_path = tiny_project(tmp_path, "llama-mha", {"target": {"layers": 2, "hidden": 32, "heads": 4,
                                                                "intermediate": 64},
                                                     "prune": prune, "mixer": mixer}, domains)
    _train_source(tmp_path / "llama-mha", tmp_path / "tokenizer", [t for texts in domains.values() for t in texts])
    assert main(["run", str(plan_path)]) == 0

    metrics = MetricsLog(tmp_path / "runs" / "tiny" / "metrics.jsonl")
    (reference,) = metrics.read("reference")
    updates = metrics.read("mixer")
    assert [u["step"] for u in updates] == list(range(5, 41, 5))
    ratio = np.full(3, 1 / 3)  # the reference ratio each q was computed against
    for update in updates:
        # pruned loss minus the source's (scaled down while every domain sits below it): what the mixer saw
        hurt = np.array(update["losses"]) - update["reference_scale"] * np.array(reference["losses"])
        np.testing.assert_allclose(update["excess"], hurt, atol=1e-9)  # no refit here
        weights = np.array(update["weights"])
        assert int(np.argmax(weights / ratio)) == int(np.argmax(hurt))  # most weight to the most hurt domain
        ratio = np.array(update["reference_ratio"])
    last = updates[-1]
    hurt = np.array(last["losses"]) - last["reference_scale"] * np.array(reference["losses"])
    assert hurt.max() > 0 and last["weights"][int(np.argmax(hurt))] > 1 / 3
    # the sampler followed the weights: each interval's tokens split like the previous update's weights
    expected = np.zeros(3)
    previous_tokens, previous_weights = np.zeros(3), np.full(3, 1 / 3)
    for update in updates:
        drawn = np.array(update["tokens"]) - previous_tokens
        expected += previous_weights * drawn.sum()
        previous_tokens, previous_weights = np.array(update["tokens"]), np.array(update["weights"])
    assert np.abs(previous_tokens - expected).max() / previous_tokens.sum() < 0.1
