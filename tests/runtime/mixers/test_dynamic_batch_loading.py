import numpy as np
import pytest

from shearc.runtime.mixers.dynamic_batch_loading import dynamic_batch_loading_update

REDPAJAMA = np.array([0.67, 0.045, 0.045, 0.02, 0.045, 0.025, 0.15])
REFERENCE = np.array([1.9643, 0.7459, 2.1393, 1.6117, 1.7590, 1.4449, 2.1251])


def test_weight_moves_to_domains_above_their_reference():
    losses = REFERENCE + np.array([0.0, 0.3, 0.0, 0.0, -0.2, 0.0, 0.0])
    new = dynamic_batch_loading_update(REDPAJAMA, losses, REFERENCE, eta=1.0, smoothing=1e-4)
    assert new.sum() == pytest.approx(1.0)
    assert new[1] > REDPAJAMA[1] and new[4] < REDPAJAMA[4]
    # exactly the Sheared-LLaMA formula
    expected = np.exp(np.log(REDPAJAMA) + (losses - REFERENCE))
    expected = 0.9999 * expected / expected.sum() + 1e-4 / 7
    np.testing.assert_allclose(new, expected / expected.sum())


def test_all_at_reference_leaves_weights_unchanged_but_for_smoothing():
    new = dynamic_batch_loading_update(REDPAJAMA, REFERENCE, REFERENCE, eta=1.0, smoothing=1e-4)
    np.testing.assert_allclose(new, REDPAJAMA, atol=1e-4)
    uniform = np.full(7, 1 / 7)
    np.testing.assert_allclose(dynamic_batch_loading_update(uniform, REFERENCE, REFERENCE, eta=1.0,
                                                            smoothing=1e-4), uniform, atol=1e-15)


@pytest.mark.parametrize("seed", range(10))
def test_weights_sum_to_one_and_keep_the_smoothing_floor(seed):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(7))
    for _ in range(50):
        weights = dynamic_batch_loading_update(weights, REFERENCE + rng.normal(0, 3, 7), REFERENCE, eta=1.0,
                                               smoothing=1e-4)
        assert weights.sum() == pytest.approx(1.0)
        assert (weights >= 1e-4 / 7 - 1e-15).all()
