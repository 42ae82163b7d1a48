import numpy as np
import pytest

from shearc.compiler.spec import DRPruningMixer as DRPruningParams
from shearc.runtime.mixers import Observation, StageInfo
from shearc.runtime.mixers.drpruning import DRPruningMixer, move_reference_ratio, positive_excess

NAMES = ["a", "b", "c"]


def _mixer(references=(2.0, 2.0, 2.0), weights=(0.5, 0.3, 0.2), **params):
    mixer = DRPruningMixer(NAMES, np.array(weights), np.array(references),
                           DRPruningParams(method="drpruning", **params).model_dump())
    return mixer


def test_all_negative_excess_shrinks_the_reference_until_one_is_positive():
    excess, factor = positive_excess(np.array([1.0, 1.5]), np.array([2.0, 2.0]), 0.1)
    assert factor == pytest.approx(0.7) and excess.max() > 0
    excess, factor = positive_excess(np.array([3.0, 1.0]), np.array([2.0, 2.0]), 0.1)
    assert factor == 1.0 and list(excess) == [1.0, -1.0]


def test_reference_ratio_moves_towards_q_within_its_clamp():
    p_0 = np.array([0.5, 0.3, 0.2])
    moved = move_reference_ratio(p_0, np.array([0.0, 0.0, 1.0]), p_0, step=0.1, clamp=2.0)
    assert moved[2] > p_0[2] and moved.sum() == pytest.approx(1.0)
    for _ in range(100):
        moved = move_reference_ratio(moved, np.array([0.0, 0.0, 1.0]), p_0, step=0.1, clamp=2.0)
        assert moved.sum() == pytest.approx(1.0)
        assert (moved >= p_0 / 2 - 1e-9).all() and (moved <= 2 * p_0 + 1e-9).all()
    assert moved[2] == pytest.approx(0.4)  # pinned at its upper clamp


def test_reference_never_increases_and_the_fit_kicks_in_late_enough():
    mixer = _mixer(references=(3.0, 3.0, 3.0))
    mixer.start_stage(StageInfo("recover", total_steps=100))
    references, fits = [], []
    for step in range(5, 101, 5):
        tokens = np.array([1e6, 2e6, 3e6]) * step
        losses = 20.0 * tokens ** -0.2 + np.array([1.0, 1.5, 0.5])
        record = mixer.update(Observation(step, losses, tokens))
        references.append(record["reference_losses"].copy())
        fits.append(record["fits"])
    steps_with_fits = [5 * (i + 1) for i, f in enumerate(fits) if f]
    assert steps_with_fits[0] == 50  # 10 recorded points needed (10% of the stage passed long before)
    diffs = np.diff(np.array(references), axis=0)
    assert (diffs <= 1e-12).all()
    assert references[-1][0] < 3.0  # the fit's end-of-stage prediction lowered the reference
    fit = fits[-1]["a"]
    assert fit["alpha"] == pytest.approx(0.2, rel=0.05) and fit["E"] == pytest.approx(1.0, rel=0.05)


def test_ratio_moves_only_after_its_share_of_the_stage():
    mixer = _mixer(fit_reference=False)
    mixer.start_stage(StageInfo("recover", total_steps=100))
    losses = np.array([2.1, 2.9, 2.2])
    mixer.update(Observation(10, losses, np.ones(3)))
    np.testing.assert_allclose(mixer.ratio, [0.5, 0.3, 0.2])
    mixer.update(Observation(20, losses, np.ones(3)))
    assert mixer.ratio[1] > 0.3


def test_state_dict_round_trip_gives_the_same_next_update():
    mixer = _mixer()
    mixer.start_stage(StageInfo("prune", total_steps=50, target_sparsity=0.8))
    rng = np.random.default_rng(0)
    for step in range(1, 16):
        tokens, sparsity = np.array([1e5, 2e5, 3e5]) * step, 0.05 * step
        losses = 30 * tokens ** -0.25 * sparsity ** 0.1 + np.array([1.0, 1.4, 0.8]) + rng.normal(0, 0.01, 3)
        mixer.update(Observation(step, losses, tokens, sparsity=sparsity))
    copy = _mixer()
    copy.load_state_dict(mixer.state_dict())
    observation = Observation(16, np.array([2.5, 2.0, 2.2]), np.full(3, 1.6e6), sparsity=0.8)
    first, second = mixer.update(observation), copy.update(observation)
    np.testing.assert_allclose(mixer.weights, copy.weights)
    np.testing.assert_allclose(first["reference_losses"], second["reference_losses"])


def test_train_loss_ema():
    from shearc.runtime.mixers.drpruning import TrainLossEMA

    ema = TrainLossEMA(2, alpha=0.1)
    ema.update(np.array([3.0, 9.9]), np.array([True, False]))
    values = ema.update(np.array([2.0, 5.0]), np.array([True, True]))
    assert values == pytest.approx([0.1 * 2.0 + 0.9 * 3.0, 5.0])
    copy = TrainLossEMA(2, alpha=0.1)
    copy.load_state_dict(ema.state_dict())
    assert copy.update(np.array([1.0, 1.0]), np.array([False, True])) == pytest.approx([2.9, 0.1 + 4.5])
