"""What drives the mixer: eval losses, or DRPruning's EMA of per-domain training losses."""

import json

import numpy as np
import pytest
import torch

from shearc.cli import main
from shearc.runtime.train.signal import MixerSignal, TrainLossEMA

from ...helpers import tiny_project


def test_train_loss_ema():
    ema = TrainLossEMA(2, alpha=0.1)
    ema.update(np.array([3.0, 9.9]), np.array([True, False]))
    values = ema.update(np.array([2.0, 5.0]), np.array([True, True]))
    assert values == pytest.approx([0.1 * 2.0 + 0.9 * 3.0, 5.0])
    copy = TrainLossEMA(2, alpha=0.1)
    copy.load_state_dict(ema.state_dict())
    assert copy.update(np.array([1.0, 1.0]), np.array([False, True])) == pytest.approx([2.9, 0.1 + 4.5])


def test_the_signal_is_the_per_domain_mean_of_each_step_moved_by_the_ema():
    signal = MixerSignal("train-ema", domains=3, ema_alpha=0.5)
    signal.add(np.array([0, 0]), torch.tensor([2.0, 4.0]))
    signal.add(np.array([1]), torch.tensor([1.0]))
    signal.end_step()  # domain 0: mean 3.0; domain 1: 1.0; domain 2 not drawn yet
    np.testing.assert_allclose(signal.losses(np.array([9.0, 9.0, 7.0])), [3.0, 1.0, 7.0])  # 2: its eval loss
    signal.add(np.array([0]), torch.tensor([5.0]))
    signal.end_step()
    np.testing.assert_allclose(signal.losses(np.array([9.0, 9.0, 7.0])), [4.0, 1.0, 7.0])
    evals = MixerSignal("eval", domains=3)
    evals.add(np.array([0]), torch.tensor([5.0]))
    evals.end_step()
    np.testing.assert_array_equal(evals.losses(np.array([9.0, 8.0, 7.0])), [9.0, 8.0, 7.0])


def test_a_train_ema_run_moves_the_mixer_by_training_losses(tmp_path):
    steps = {"steps": 8, "global_batch": 4, "seq_len": 16, "warmup_steps": 2, "eval_interval": 2, "lr": 1e-3}
    plan = tiny_project(tmp_path, "llama-mha", {
        "target": {"layers": 3, "hidden": 32, "heads": 4, "intermediate": 96},
        "prune": {"method": "magnitude", "granularities": ["layer", "head", "intermediate", "hidden"]},
        "mixer": {"method": "drpruning", "reference": "source", "signal": "train-ema"},
        "recovery": {"method": "full", **steps}, "export": {"dtype": "float32"}})
    assert main(["run", str(plan), "--out", str(tmp_path / "run")]) == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    updates = [r for r in map(json.loads, lines) if r["event"] == "mixer"]
    assert len(updates) == 4
    for update in updates:  # the training-loss EMA drove the mixer; the eval losses are kept for the record
        assert update["losses"] != update["eval_losses"]
    assert updates[-1]["weights"] != updates[0]["weights"]
