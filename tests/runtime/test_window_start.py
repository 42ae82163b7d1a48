"""A source whose tokenizer puts BOS in front of every text sees BOS first in every window of every stage:
calibration, training, the per-domain evals, the finalize check and evaluation; and the losses it reports are
what transformers computes on those windows."""

import json

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from shearc.cli import main

from ..helpers import tiny_project
from ..real.plain import eval_stream, windows_as_used

SPEC = {
    "target": {"heads": 4, "intermediate": 96},
    "prune": {"method": "taylor", "calibration_samples": 4, "calibration_seq_len": 16},
    "recovery": {"method": "full", "steps": 2, "global_batch": 2, "seq_len": 16, "warmup_steps": 1,
                 "eval_interval": 2},
    "eval": {"sequences_per_domain": 3, "seq_len": 16},
    "schedule": {"micro_batch": 2},
    "export": {"dtype": "float32"},
}


@pytest.fixture
def first_tokens(monkeypatch):
    """The first token of every row of every forward of a Llama."""
    seen = []
    forward = LlamaForCausalLM.forward

    def recording(self, input_ids=None, **kwargs):
        seen.extend(input_ids[:, 0].tolist())
        return forward(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", recording)
    return seen


@pytest.mark.parametrize("adds_bos", [True, False])
def test_every_window_begins_as_the_tokenizer_begins_a_text(tmp_path, first_tokens, adds_bos):
    plan_path = tiny_project(tmp_path, "llama-mha", SPEC, adds_bos=adds_bos)
    assert main(["run", str(plan_path)]) == 0
    assert len(first_tokens) > 30  # calibration, training, evals, the check, evaluation, latency
    if adds_bos:
        assert set(first_tokens) == {1}
    else:  # windows start where the stream is: mostly mid-document
        assert sum(token != 1 for token in first_tokens) > len(first_tokens) / 2


def test_the_source_loss_reported_is_transformers_on_windows_begun_with_bos(tmp_path):
    plan_path = tiny_project(tmp_path, "llama-mha", SPEC, adds_bos=True)
    assert main(["run", str(plan_path)]) == 0
    report = json.loads((tmp_path / "runs" / "tiny" / "report.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    model = LlamaForCausalLM.from_pretrained(tmp_path / "llama-mha").eval()
    for name, measured in zip(report["domains"], report["source"]["domains"], strict=True):
        stream = eval_stream(tmp_path / "data" / f"{name}.jsonl", tokenizer, eval_fraction=0.1, seed=0)
        windows = windows_as_used(stream, tokenizer, length=16, count=3)
        assert len(windows) >= 2 and all(window[0] == 1 for window in windows)
        with torch.no_grad():
            sums = [model(input_ids=torch.tensor([w]), labels=torch.tensor([w])).loss.item() * (len(w) - 1)
                    for w in windows]
        assert measured["loss"] == pytest.approx(sum(sums) / sum(len(w) - 1 for w in windows), abs=1e-5)
