"""A NaN loss, or a loss runtime.divergence_rise above the stage's first, mid-run: `stop` ends the run (exit 2) keeping
only checkpoints without such a step and says where to resume;
`skip` drops those updates, logs them, and stops past runtime.max_skipped_steps in a row."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from shearc.cli import main
from shearc.runtime.loss import SequenceLoss
from shearc.runtime.metrics import MetricsLog
from shearc.runtime.stages.recover import LanguageModelling

from ...helpers import tiny_project

RECOVERY = {"method": "full", "steps": 6, "global_batch": 4, "seq_len": 16, "lr": 1e-3, "warmup_steps": 1,
            "eval_interval": 2}


@pytest.fixture
def poison(monkeypatch):
    """NaN sequence losses at the given (0-based) recovery steps."""
    original = LanguageModelling.lm_loss

    def at(steps):
        def lm_loss(self, model, ids, step, micro):
            losses = original(self, model, ids, step, micro)
            return SequenceLoss(losses.mean * math.nan, losses.rows * math.nan) if step in steps else losses

        monkeypatch.setattr(LanguageModelling, "lm_loss", lm_loss)
    return at


def _project(tmp_path, **runtime):
    return tiny_project(tmp_path, "llama-mha", {
        "target": {"heads": 4, "intermediate": 96}, "prune": {"method": "magnitude"}, "recovery": RECOVERY,
        "runtime": {"checkpoint_interval": 2, "keep_checkpoints": 10, **runtime}, "export": {"dtype": "float32"}})


def _all_finite(run_dir):
    for path in (run_dir / "checkpoints").glob("*/model.safetensors"):
        for name, tensor in load_file(path).items():
            assert torch.isfinite(tensor).all(), f"{path.parent.name}: {name}"


def test_stop_ends_the_run_naming_where_and_keeps_only_finite_checkpoints(tmp_path, capsys, poison):
    plan_path = _project(tmp_path)
    poison({3})
    assert main(["run", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "recover step 4 of 6: the loss is nan" in err and "Traceback" not in err
    assert "Domain weights: a 0.500, b 0.500" in err and "The last good checkpoint is 02-recover-00000002" in err
    run_dir = tmp_path / "runs" / "tiny"
    _all_finite(run_dir)
    assert not (run_dir / "model").exists()
    (event,) = MetricsLog(run_dir / "metrics.jsonl").read("nonfinite")
    assert (event["stage"], event["step"], event["policy"]) == ("recover", 4, "stop")
    poison(set())  # the cause fixed: the same plan resumes from the last good checkpoint and finishes
    assert main(["run", str(plan_path)]) == 0
    assert "resuming from 02-recover-00000002" in capsys.readouterr().err


def test_skip_drops_the_bad_updates_and_finishes(tmp_path, poison):
    plan_path = _project(tmp_path, on_nonfinite="skip")
    poison({2, 3})
    assert main(["run", str(plan_path)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    log = MetricsLog(run_dir / "metrics.jsonl")
    assert [(e["step"], e["skipped_in_a_row"]) for e in log.read("nonfinite")] == [(3, 1), (4, 2)]
    assert [e["step"] for e in log.read("train") if e["stage"] == "recover"] == [1, 2, 3, 4, 5, 6]
    _all_finite(run_dir)
    for tensor in load_file(run_dir / "model" / "model.safetensors").values():
        assert torch.isfinite(tensor).all()
    evaluated = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").exists() else None
    assert evaluated is None or all(math.isfinite(d["loss"]) for d in evaluated["result"]["domains"])


def test_a_first_step_that_is_not_finite_leaves_the_guard_waiting_for_a_finite_loss(tmp_path, poison):
    plan_path = _project(tmp_path, on_nonfinite="skip")
    poison({0})
    assert main(["run", str(plan_path)]) == 0
    log = MetricsLog(tmp_path / "runs" / "tiny" / "metrics.jsonl")
    assert [e["step"] for e in log.read("nonfinite")] == [1] and log.read("diverged") == []


def test_skip_stops_past_the_limit_in_a_row(tmp_path, capsys, poison):
    plan_path = _project(tmp_path, on_nonfinite="skip", max_skipped_steps=2)
    poison({1, 2, 3, 4, 5})
    assert main(["run", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "recover step 4 of 6" in err and "3 steps in a row (runtime.max_skipped_steps: 2)" in err
    _all_finite(tmp_path / "runs" / "tiny")


@pytest.fixture
def inflate(monkeypatch):
    """Sequence losses 100 times as large at the given (0-based) recovery steps: finite, far above the stage's
    first loss, as a learning rate 1,000 times too high leaves them."""
    original = LanguageModelling.lm_loss

    def at(steps):
        def lm_loss(self, model, ids, step, micro):
            losses = original(self, model, ids, step, micro)
            return SequenceLoss(losses.mean * 100, losses.rows * 100) if step in steps else losses

        monkeypatch.setattr(LanguageModelling, "lm_loss", lm_loss)
    return at


def test_a_diverged_loss_stops_the_run_naming_where_and_the_last_good_checkpoint(tmp_path, capsys, inflate):
    """Three steps in a row above the bound: the first two updates dropped, the third stops the run."""
    plan_path = _project(tmp_path)
    inflate({3, 4, 5})
    assert main(["run", str(plan_path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "diverged loss" in err and "recover step 6 of 6: the loss is" in err and "Traceback" not in err
    assert "more than runtime.divergence_rise (5 nats) above the stage's first loss" in err
    assert "stopped after 3 steps in a row above it (runtime.on_nonfinite: stop)" in err
    assert "The last good checkpoint is 02-recover-00000004" in err  # after step 3: steps 4 and 5 were not applied
    run_dir = tmp_path / "runs" / "tiny"
    assert (run_dir / "checkpoints" / "02-recover-00000004").is_dir() and not (run_dir / "model").exists()
    events = MetricsLog(run_dir / "metrics.jsonl").read("diverged")
    assert [(e["step"], e["skipped_in_a_row"], e["stopped"]) for e in events] == [(4, 1, False), (5, 2, False),
                                                                                    (6, 3, True)]
    first = next(e["loss"] for e in MetricsLog(run_dir / "metrics.jsonl").read("train") if e["stage"] == "recover")
    vocab = json.loads(plan_path.read_text())["source"]["fingerprint_fields"]["vocab_size"]
    assert all(e["uniform_loss"] == pytest.approx(math.log(vocab)) for e in events)
    assert all(e["bound"] == pytest.approx(max(first + 5.0, math.log(vocab))) for e in events)
    assert all(e["loss"] > e["bound"] for e in events)
    kept = torch.load(run_dir / "checkpoints" / "02-recover-00000004" / "trainer.pt", weights_only=True)
    assert kept["first_loss"] == pytest.approx(first)  # a resumed stage measures against its own first loss
    inflate(set())  # resumed: the guard's reference is the stage's first loss, kept in the checkpoint
    assert main(["run", str(plan_path)]) == 0
    assert "resuming from 02-recover-00000004" in capsys.readouterr().err


def test_under_stop_a_single_diverged_step_is_dropped_and_the_card_says_so(tmp_path, capsys, inflate):
    """One step far above the rest, as one sampled hard-concrete mask can make, is not applied; the run goes on."""
    plan_path = _project(tmp_path)
    inflate({3})
    assert main(["run", str(plan_path)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: recover step 4: loss" in err and "its update is not applied (1 in a row)" in err
    run_dir = tmp_path / "runs" / "tiny"
    (event,) = MetricsLog(run_dir / "metrics.jsonl").read("diverged")
    assert (event["step"], event["policy"], event["stopped"]) == (4, "stop", False)
    card = (run_dir / "model" / "README.md").read_text()
    assert "- recover step 4: loss" in card and "update skipped" in card


def test_skip_drops_diverged_updates_finishes_and_the_card_and_report_say_so(tmp_path, capsys, inflate):
    plan_path = _project(tmp_path, on_nonfinite="skip")
    inflate({2, 3})
    assert main(["run", str(plan_path)]) == 0
    run_dir = tmp_path / "runs" / "tiny"
    events = MetricsLog(run_dir / "metrics.jsonl").read("diverged")
    assert [(e["step"], e["skipped_in_a_row"]) for e in events] == [(3, 1), (4, 2)]
    card = (run_dir / "model" / "README.md").read_text()
    assert "Training steps not applied:" in card and "- recover step 3: loss" in card and "update skipped" in card
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    assert "training step not applied: recover step 4: loss" in capsys.readouterr().out


def test_no_guard_when_the_plan_turns_it_off(tmp_path, inflate):
    plan_path = _project(tmp_path, divergence_rise=None)
    inflate({3})
    assert main(["run", str(plan_path)]) == 0
    log = MetricsLog(tmp_path / "runs" / "tiny" / "metrics.jsonl")
    assert log.read("diverged") == [] and max(e["loss"] for e in log.read("train")) > 100
