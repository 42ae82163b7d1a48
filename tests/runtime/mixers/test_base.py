
import numpy as np
import pytest
import torch

from shearc.compiler.compile import compile_spec
from shearc.runtime.metrics import MetricsLog
from shearc.runtime.mixers import Observation, StageInfo, build_mixer, update_and_log
from shearc.runtime.train.checkpoint import require_plain

from ...helpers import tiny_spec, write_spec


@pytest.fixture
def plan(models):
    def compiled(mixer, references=(2.0, 3.0)):
        spec = tiny_spec("llama-mha", mixer=mixer)
        for domain, reference in zip(spec["data"]["domains"], references, strict=True):
            domain["reference_loss"] = reference
        return compile_spec(write_spec(models, spec), models / "plan.json")
    return compiled


@pytest.mark.parametrize("method", ["constant", "dynamic-batch-loading", "drpruning"])
def test_built_from_a_compiled_plan_logged_and_restored(plan, tmp_path, method):
    mixer = build_mixer(plan({"method": method}))
    assert mixer.names == ["a", "b"] and list(mixer.weights) == [0.5, 0.5]
    mixer.start_stage(StageInfo("prune", total_steps=20, target_sparsity=0.5))
    metrics = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (5, 10):
        update_and_log(mixer, Observation(step, np.array([2.5, 3.0]), np.array([1e4, 1e4]) * step, 0.1), metrics)
    records = metrics.read("mixer")
    assert [r["step"] for r in records] == [5, 10]
    assert records[-1]["weights"] == pytest.approx(list(mixer.weights))
    assert records[-1]["losses"] == [2.5, 3.0] and records[-1]["method"] == method
    if method != "constant":
        assert records[-1]["reference_losses"] == [2.0, 3.0]
        assert mixer.weights[0] > 0.5  # domain a is 0.5 above its reference, b is at it


@pytest.mark.parametrize("method", ["constant", "dynamic-batch-loading", "drpruning"])
def test_state_reloads_with_weights_only_and_continues_exactly(plan, tmp_path, method):
    """A checkpoint's mixer state holds plain values only (no numpy scalars): torch.load(weights_only=True)
    reads it back whatever numpy wrote it, and the restored mixer decides the next update as the original."""
    params = {"method": method, **({"fit_min_points": 3, "fit_min_progress": 0.0} if method == "drpruning" else {})}
    mixer = build_mixer(plan(params))
    mixer.start_stage(StageInfo("prune", total_steps=40, target_sparsity=0.5))
    rng = np.random.default_rng(0)

    def observation(step):
        losses = np.array([2.0, 3.0]) + 2.0 / np.sqrt(step) + rng.normal(0, 1e-3, 2)
        return Observation(step, losses, np.array([1e4, 2e4]) * step, 0.5 * step / 40)

    records = [mixer.update(observation(step)) for step in range(4, 24, 4)]
    if method == "drpruning":
        assert any(fit is not None for fit in records[-1]["fits"].values())  # the history holds fitted points
    require_plain({"mixer": mixer.state_dict()})
    torch.save({"mixer": mixer.state_dict()}, tmp_path / "trainer.pt")
    restored = build_mixer(plan(params))
    restored.load_state_dict(torch.load(tmp_path / "trainer.pt", weights_only=True)["mixer"])
    np.testing.assert_array_equal(restored.weights, mixer.weights)
    following = observation(24)
    mixer.update(following)
    restored.update(following)
    np.testing.assert_array_equal(restored.weights, mixer.weights)


def test_source_measured_references(plan):
    mixer = build_mixer(plan({"method": "dynamic-batch-loading", "reference": "source"}, references=(None, None)))
    mixer.start_stage(StageInfo("recover", total_steps=10))
    with pytest.raises(RuntimeError, match="no reference losses"):
        mixer.update(Observation(1, np.array([1.0, 1.0]), np.ones(2)))
    mixer.set_reference(np.array([0.5, 1.0]))
    mixer.update(Observation(1, np.array([1.0, 1.0]), np.ones(2)))
    assert mixer.weights[0] > mixer.weights[1]


def test_recovery_continues_from_the_pruned_weights_unless_restarted(plan):
    mixer = build_mixer(plan({"method": "dynamic-batch-loading"}))
    mixer.start_stage(StageInfo("prune", total_steps=10, target_sparsity=0.5))
    mixer.update(Observation(5, np.array([3.0, 3.0]), np.ones(2)))
    pruned = mixer.weights
    mixer.start_stage(StageInfo("recover", total_steps=10))
    np.testing.assert_allclose(mixer.weights, pruned)
    mixer.start_stage(StageInfo("recover", total_steps=10), restart_weights=True)
    np.testing.assert_allclose(mixer.weights, [0.5, 0.5])


def test_metrics_from_other_ranks_write_nothing(tmp_path):
    MetricsLog(None).write("mixer", step=1)
    assert MetricsLog(None).read() == []


def test_tensorboard_mirrors_training_and_mixer_records(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = MetricsLog(tmp_path / "metrics.jsonl")
    assert metrics.tensorboard is not None  # installed with the dev extra
    metrics.write("train", stage="prune", step=3, loss=2.5, lr_scale=1.0, grad_norm=0.7, tokens_per_second=100.0)
    metrics.write("mixer", stage="prune", step=3, domains=["a", "b"], weights=[0.25, 0.75], losses=[2.0, 3.0])
    metrics.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert events.Scalars("prune/loss")[0].value == 2.5 and events.Scalars("prune/loss")[0].step == 3
    assert events.Scalars("prune/weight/b")[0].value == 0.75
