import numpy as np
import pytest

from shearc.runtime.mixers.dro import chi_square, clamp_to_smallest, floor_to_ratio, worst_case_weights

RHO, FLOOR, TOLERANCE = 0.1, 0.2, 1e-4
REDPAJAMA = np.array([0.67, 0.045, 0.045, 0.02, 0.045, 0.025, 0.15])  # cc, github, book, se, wiki, arxiv, c4
REDPAJAMA_1_3B_REFERENCE = np.array([1.9643, 0.7459, 2.1393, 1.6117, 1.7590, 1.4449, 2.1251])


def test_a_seven_domain_redpajama_step_matches_the_reference():
    """One update of DRPruning's DRO_loading_callback (single-process version) at p_R = p_0, by hand:
    excess = L - L_ref; bracket [-max / (sqrt(2 rho + 1) - 1), max]; bisection until |chi2 - rho| <= 1e-4
    (14 halvings, eta = 0.06062...); q = p_R relu(excess - eta), normalised; q / p_R clamped at 0.2 and
    renormalised; q clamped at min p_R = 0.02 and renormalised. The reference runs in float32: 1e-6."""
    losses = np.array([2.10, 0.80, 2.30, 1.62, 1.90, 1.50, 2.20])
    q, eta = worst_case_weights(losses - REDPAJAMA_1_3B_REFERENCE, REDPAJAMA, rho=RHO, min_prob=FLOOR,
                                tolerance=TOLERANCE, clamp_q_to_min=True)
    assert eta == pytest.approx(0.0606229, abs=1e-6)
    # the reference's q: github, stackexchange and arxiv end at 0.02 / 1.0423 after the last clamp
    np.testing.assert_allclose(q, [0.7827476432511056, 0.019187996185266773, 0.07007881064773709,
                                   0.019187996185266773, 0.056284038022841196, 0.019187996185266773,
                                   0.033325519522515876], atol=1e-6)
    unclamped, _ = worst_case_weights(losses - REDPAJAMA_1_3B_REFERENCE, REDPAJAMA, rho=RHO, min_prob=FLOOR,
                                      tolerance=TOLERANCE, clamp_q_to_min=False)
    # before the last clamp: github, stackexchange and arxiv at their min_prob floors, renormalised
    np.testing.assert_allclose(unclamped[[1, 3, 5]], [0.008840864524245262, 0.003929273225367069,
                                                      0.00491159176453948], atol=1e-6)


@pytest.mark.parametrize("seed", range(20))
def test_q_sits_on_the_ball_within_the_tolerance_and_above_its_floors(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 9))
    p_ref = rng.dirichlet(np.ones(k))
    excess = rng.normal(0.2, 0.5, size=k)
    excess[rng.integers(k)] = abs(excess).max() + 0.1  # the largest is positive, as the mixer ensures
    q, _ = worst_case_weights(excess, p_ref, rho=RHO, min_prob=FLOOR, tolerance=TOLERANCE, clamp_q_to_min=True)
    assert q.sum() == pytest.approx(1.0, abs=1e-12)
    assert chi_square(q_before_last_clamp(excess, p_ref), p_ref) <= RHO + TOLERANCE
    # each floor holds up to its renormalisation (at most 1 + min_prob, then 1 + min p_R's share)
    assert (q >= FLOOR * p_ref / (1 + FLOOR) / (1 + k * p_ref.min()) - 1e-12).all()
    assert (q >= p_ref.min() / (1 + k * p_ref.min()) - 1e-12).all()


def q_before_last_clamp(excess, p_ref):
    q, _ = worst_case_weights(excess, p_ref, rho=RHO, min_prob=FLOOR, tolerance=TOLERANCE, clamp_q_to_min=False)
    return q


def test_most_weight_goes_to_the_largest_excess():
    p_ref = np.full(5, 0.2)
    excess = np.array([0.1, 0.9, 0.3, -0.2, 0.5])
    q, _ = worst_case_weights(excess, p_ref, rho=RHO, min_prob=FLOOR, tolerance=TOLERANCE, clamp_q_to_min=True)
    assert np.argmax(q) == 1 and q[1] > q[4] > q[2]
    # clamp_q_to_min: under a uniform p_R, every entry below 0.2 is raised to it, then all renormalised
    unclamped = q_before_last_clamp(excess, p_ref)
    assert (unclamped[[0, 2, 3]] < 0.2).all()
    np.testing.assert_allclose(q, np.maximum(unclamped, 0.2) / np.maximum(unclamped, 0.2).sum())
    assert chi_square(q_before_last_clamp(excess, p_ref), p_ref) == pytest.approx(RHO, abs=TOLERANCE)


def test_equal_excess_keeps_the_reference():
    q, _ = worst_case_weights(np.full(3, 0.4), np.array([0.5, 0.3, 0.2]), rho=RHO, min_prob=FLOOR,
                              tolerance=TOLERANCE, clamp_q_to_min=True)
    np.testing.assert_allclose(q, [0.5, 0.3, 0.2], atol=1e-9)


def test_floors_clamp_then_renormalise_as_the_reference_does():
    p = np.array([0.6, 0.3, 0.1])
    q = floor_to_ratio(np.array([1.0, 0.0, 0.0]), p, 0.2)
    np.testing.assert_allclose(q, np.array([1.0, 0.06, 0.02]) / 1.08)  # q / p clamped at 0.2, then / sum
    np.testing.assert_allclose(clamp_to_smallest(np.array([0.9, 0.08, 0.02]), p), np.array([0.9, 0.1, 0.1]) / 1.1)
