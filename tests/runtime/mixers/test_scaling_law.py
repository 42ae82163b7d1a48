import numpy as np
import pytest

from shearc.runtime.mixers.scaling_law import fit_scaling_law

TOKENS = np.geomspace(2e6, 3e8, 16)


def test_recovers_a_pruning_law_and_its_prediction():
    rng = np.random.default_rng(0)
    sparsity = rng.uniform(0.05, 0.75, size=TOKENS.size)  # D and s vary independently
    truth = {"A": 40.0, "alpha": 0.3, "beta": -0.2, "E": 1.5}

    def law(d, s):
        return truth["A"] * d ** -truth["alpha"] * s ** -truth["beta"] + truth["E"]

    fit = fit_scaling_law(TOKENS, law(TOKENS, sparsity), sparsity)
    for name, value in truth.items():
        assert getattr(fit, name) == pytest.approx(value, rel=0.05), name
    assert fit.predict(1e9, 0.8) == pytest.approx(law(1e9, 0.8), rel=0.01)


def test_recovers_a_recovery_law_and_its_prediction():
    truth_a, truth_alpha, truth_e = 25.0, 0.15, 0.9
    losses = truth_a * TOKENS ** -truth_alpha + truth_e
    fit = fit_scaling_law(TOKENS, losses)
    assert (fit.A, fit.alpha, fit.E) == pytest.approx((truth_a, truth_alpha, truth_e), rel=0.05)
    assert fit.beta == 0.0
    assert fit.predict(5e9) == pytest.approx(truth_a * 5e9 ** -truth_alpha + truth_e, rel=0.01)


def test_is_robust_to_an_outlier():
    losses = 25.0 * TOKENS ** -0.15 + 0.9
    spoiled = losses.copy()
    spoiled[5] += 1.0  # one bad eval
    fit = fit_scaling_law(TOKENS, spoiled)
    assert fit.predict(5e9) == pytest.approx(25.0 * 5e9 ** -0.15 + 0.9, rel=0.01)
