import math

import pytest
import torch

from shearc.runtime.masks.hard_concrete import (
    Constants,
    deterministic_mask,
    init_log_alpha,
    keep_probability,
    lagrangian,
    sample,
)
from shearc.sections import HardConcretePruneSpec


def test_constants_are_the_references():
    params = HardConcretePruneSpec(method="hard-concrete")
    constants = Constants.from_plan(params)
    assert (constants.temperature, constants.low, constants.high, constants.epsilon) == (2 / 3, -0.1, 1.1, 1e-6)
    assert (params.init_log_alpha_mean, params.init_log_alpha_std, params.soft_mask_scale) == (5.0, 0.01, 0.8)
    schedule = (params.steps, params.target_warmup_fraction, params.mask_lr, params.lr)
    assert schedule == (3200, 0.2, 1.0, 1e-4)


def test_keep_probability_matches_sampling():
    constants = Constants()
    log_alpha = torch.tensor([-3.0, -0.5, 0.0, 0.7, 3.0])
    draws = torch.stack([sample(log_alpha, constants, torch.Generator().manual_seed(i)) for i in range(20000)])
    empirical = (draws > 0).double().mean(0)
    torch.testing.assert_close(empirical, keep_probability(log_alpha, constants).double(), atol=0.01, rtol=0)
    assert draws.min() == 0.0 and draws.max() == 1.0  # the stretch puts mass on exactly 0 and 1
    # the closed form: sigmoid(log_alpha - beta * log(-l / r))
    assert keep_probability(torch.tensor(0.0), constants).item() == pytest.approx(
        1 / (1 + math.exp((2 / 3) * math.log(0.1 / 1.1))))


def test_initialisation_keeps_everything():
    # N(5, 0.01) lies above the clamp at log(1e2): every unit starts at the clamp, as in the
    # reference (which clamps after each step); sampling noise breaks the tie.
    log_alpha = init_log_alpha((4, 32), 5.0, 0.01, torch.Generator().manual_seed(0))
    assert torch.equal(log_alpha, torch.full((4, 32), math.log(1e2)))
    assert keep_probability(log_alpha, Constants()).min() > 0.99
    low = init_log_alpha((1000,), 0.0, 0.5, torch.Generator().manual_seed(0))
    assert 0.4 < low.std() < 0.6 and low.min() >= math.log(1e-2)


@pytest.mark.parametrize("keep", [1, 3, 7, 8])
def test_deterministic_mask_keeps_exactly_k_per_row_by_log_alpha(keep):
    log_alpha = torch.randn(5, 8, generator=torch.Generator().manual_seed(keep))
    mask = deterministic_mask(log_alpha, keep, Constants(), 0.8)
    assert ((mask > 0).sum(-1) == keep).all()
    for row in range(5):
        kept = set(torch.nonzero(mask[row]).flatten().tolist())
        assert kept == set(torch.topk(log_alpha[row], keep).indices.tolist())
    soft = torch.sigmoid(log_alpha / (2 / 3) * 0.8)
    assert torch.equal(mask[mask > 0], soft[mask > 0])
    with pytest.raises(ValueError):
        deterministic_mask(log_alpha, 0, Constants(), 0.8)




def test_lagrangian_sign():
    """Masks descend and multipliers ascend: an oversize model raises lambda_1 and shrinks."""
    constants = Constants()
    log_alpha = torch.full((16,), 2.0, requires_grad=True)
    lambda_1 = torch.zeros((), requires_grad=True)
    lambda_2 = torch.zeros((), requires_grad=True)
    expected = keep_probability(log_alpha, constants).mean()
    term = lagrangian(expected, 0.5, lambda_1, lambda_2)
    term.backward()
    assert lambda_1.grad.item() == pytest.approx(expected.item() - 0.5)  # d term / d lambda_1 = s_hat - t > 0
    with torch.no_grad():
        lambda_1 += 1.0 * lambda_1.grad  # ascent
    assert lambda_1.item() > 0
    log_alpha.grad = None
    lagrangian(keep_probability(log_alpha, constants).mean(), 0.5, lambda_1, lambda_2).backward()
    assert (log_alpha.grad > 0).all()  # descent lowers log_alpha: fewer units kept
