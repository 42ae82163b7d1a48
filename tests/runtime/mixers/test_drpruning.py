import numpy as np
import pytest

from shearc.runtime.mixers import Observation, StageInfo
from shearc.runtime.mixers.drpruning import DRPruningMixer, move_reference_ratio, positive_excess
from shearc.sections import DRPruningSpec

NAMES = ["a", "b", "c"]


def _mixer(references=(2.0, 2.0, 2.0), weights=(0.5, 0.3, 0.2), **params):
    mixer = DRPruningMixer(NAMES, np.array(weights), np.array(references),
                           DRPruningSpec(method="drpruning", **params))
    return mixer


def test_all_negative_excess_shrinks_the_reference_until_one_is_positive():
    excess, factor = positive_excess(np.array([1.0, 1.5]), np.array([2.0, 2.0]), 0.1)
    assert factor == pytest.approx(0.7) and excess.max() > 0
    excess, factor = positive_excess(np.array([3.0, 1.0]), np.array([2.0, 2.0]), 0.1)
    assert factor == 1.0 and list(excess) == [1.0, -1.0]


def test_reference_ratio_moves_and_is_clamped_twice_as_the_reference_does():
    """RedPajama's p_0, one step towards the q of test_dro's seven-domain update, by hand: 0.9 p_R + 0.1 q,
    renormalised; clamped to [p_0 / 2, 2 p_0] (inactive here) and renormalised; clamped to [min p_0, max p_0]
    = [0.02, 0.67] (cc comes down to 0.67, stackexchange up to 0.02) and renormalised."""
    p_0 = np.array([0.67, 0.045, 0.045, 0.02, 0.045, 0.025, 0.15])
    q = np.array([0.7827476432511056, 0.019187996185266773, 0.07007881064773709, 0.019187996185266773,
                  0.056284038022841196, 0.019187996185266773, 0.033325519522515876])
    moved = move_reference_ratio(p_0, q, p_0, step=0.1, clamp=2.0, clamp_to_initial_range=True)
    by_hand = np.clip(0.9 * p_0 + 0.1 * q, 0.02, 0.67)
    np.testing.assert_allclose(moved, by_hand / by_hand.sum())
    np.testing.assert_allclose(moved, [0.6775846481323242, 0.0428989976644516, 0.04804568365216255,
                                       0.020226405933499336, 0.04665059223771095, 0.024695226922631264,
                                       0.13989853858947754], atol=1e-6)  # the reference's (float32) numbers
    once = move_reference_ratio(p_0, q, p_0, step=0.1, clamp=2.0, clamp_to_initial_range=False)
    assert once[0] > 0.67  # without the second clamp cc may rise above the largest initial share


def test_reference_ratio_stays_within_its_first_clamp():
    p_0 = np.array([0.5, 0.3, 0.2])
    moved = p_0
    for _ in range(100):
        moved = move_reference_ratio(moved, np.array([0.0, 0.0, 1.0]), p_0, step=0.1, clamp=2.0,
                                     clamp_to_initial_range=False)
        assert moved.sum() == pytest.approx(1.0)
    # each step clips c at 2 p_0 = 0.4 while a and b keep 0.9 of theirs (s in all); renormalising after the
    # clip settles where 0.9 s + 0.4 = 0.9: s = 5/9, c = 4/9 (a little over 2 p_0, as in the reference)
    assert (moved >= p_0 / 2).all() and moved[2] == pytest.approx(4 / 9)


def _law(tokens, floor):
    return 20.0 * tokens ** -0.2 + floor


def test_the_first_fit_replaces_the_static_reference_then_it_only_falls():
    """Losses sit far above the static references (1.0) all stage. The first fit (2% in, 11 points) replaces
    them outright with its end-of-stage prediction, which lies above them; later fits only lower them."""
    floors = np.array([2.0, 2.5, 1.5])
    mixer = _mixer(references=(1.0, 1.0, 1.0))
    mixer.start_stage(StageInfo("recover", total_steps=1000))
    per_step = np.array([1e4, 2e4, 3e4])
    records = {}
    for step in range(10, 1001, 10):
        tokens = per_step * step
        records[step] = mixer.update(Observation(step, _law(tokens, floors), tokens))
    # history from 2% of the stage (step 20): the 11th point, and the first fit, come at step 120
    assert next(step for step, r in records.items() if r["fits"]) == 120
    first = records[120]
    final_tokens = per_step * 1000  # the fit's D at the end of the stage
    np.testing.assert_allclose(first["reference_losses"], _law(final_tokens, floors), rtol=1e-6)
    assert (first["reference_losses"] > 1.0).all()  # above the static reference: replaced all the same
    fit = first["fits"]["b"]
    assert len(fit["predictions"]) == 3 and fit["prediction"] == pytest.approx(np.mean(fit["predictions"]))
    references = np.array([r["reference_losses"] for step, r in sorted(records.items()) if step >= 120])
    assert (np.diff(references, axis=0) <= 1e-12).all()
    assert len(mixer.history) == 64  # the last 64 evals


def test_each_prediction_is_at_most_the_lowest_loss_seen():
    mixer = _mixer(references=(1.0, 1.0, 1.0), fit_min_points=3, fit_min_progress=0.0)
    mixer.start_stage(StageInfo("recover", total_steps=100))
    for step, loss in zip((10, 20, 30), (3.0, 2.0, 2.5), strict=True):  # no law fits a rise: capped at 2.0
        record = mixer.update(Observation(step, np.full(3, loss), np.full(3, 1e4 * step)))
    assert all(p <= 2.0 for fit in record["fits"].values() for p in fit["predictions"])


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
