import numpy as np
import pytest

from shearc.runtime.mixers.dro import chi_square, floor_to_ratio, worst_case_weights

RHO, FLOOR = 0.1, 0.2
REDPAJAMA = np.array([0.67, 0.045, 0.045, 0.02, 0.045, 0.025, 0.15])


@pytest.mark.parametrize("seed", range(20))
def test_q_stays_in_the_ball_and_above_the_floor(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 9))
    p_ref = rng.dirichlet(np.ones(k))
    excess = rng.normal(0.2, 0.5, size=k)
    excess[rng.integers(k)] = abs(excess).max() + 0.1  # the largest is positive, as the mixer ensures
    q, _ = worst_case_weights(excess, p_ref, rho=RHO, min_prob=FLOOR, tolerance=1e-4)
    assert q.sum() == pytest.approx(1.0, abs=1e-12)
    assert chi_square(q, p_ref) <= RHO + 1e-4
    assert (q >= FLOOR * p_ref - 1e-12).all()


def test_most_weight_goes_to_the_largest_excess():
    p_ref = np.full(5, 0.2)
    excess = np.array([0.1, 0.9, 0.3, -0.2, 0.5])
    q, _ = worst_case_weights(excess, p_ref, rho=RHO, min_prob=FLOOR, tolerance=1e-4)
    assert np.argmax(q) == 1
    assert list(np.argsort(q)) == list(np.argsort(excess))  # ordered like the excess losses
    assert chi_square(q, p_ref) == pytest.approx(RHO, abs=1e-4)  # the constraint is active


def test_with_a_skewed_reference_the_ratio_to_it_follows_the_excess():
    excess = np.array([0.1, 0.5, 0.0, 0.3, 0.2, 0.05, 0.4])
    q, _ = worst_case_weights(excess, REDPAJAMA, rho=RHO, min_prob=FLOOR, tolerance=1e-4)
    assert np.argmax(q / REDPAJAMA) == np.argmax(excess)
    assert chi_square(q, REDPAJAMA) <= RHO + 1e-4


def test_equal_excess_keeps_the_reference():
    q, _ = worst_case_weights(np.full(3, 0.4), np.array([0.5, 0.3, 0.2]), rho=RHO, min_prob=FLOOR, tolerance=1e-4)
    np.testing.assert_allclose(q, [0.5, 0.3, 0.2], atol=1e-9)


def test_a_ball_too_large_to_fill_gives_the_floored_extreme():
    p_ref = np.array([0.5, 0.5])
    q, _ = worst_case_weights(np.array([1.0, 0.0]), p_ref, rho=10.0, min_prob=FLOOR, tolerance=1e-4)
    np.testing.assert_allclose(q, [0.9, 0.1])  # everything on the worst domain but the other's floor


def test_floor_is_exact_after_renormalising():
    p = np.array([0.6, 0.3, 0.1])
    q = floor_to_ratio(np.array([1.0, 0.0, 0.0]), p, 0.2)
    np.testing.assert_allclose(q, [1 - 0.06 - 0.02, 0.06, 0.02])
