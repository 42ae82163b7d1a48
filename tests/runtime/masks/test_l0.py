import math

import pytest
import torch

from shearc.compiler.families import Shape
from shearc.compiler.shape import count_params
from shearc.compiler.source import introspect
from shearc.runtime.masks.l0 import L0Masks
from shearc.sections import HardConcretePruneSpec

from ...helpers import TINY_CONFIGS

PARAMS = HardConcretePruneSpec(method="hard-concrete")
UNITS = ["layer", "hidden", "kv_group", "intermediate"]


def _masks(name, target):
    source = introspect(TINY_CONFIGS[name], "local", None)
    return source, L0Masks(source.shape, target, UNITS, PARAMS, torch.Generator().manual_seed(0))


def _saturate(l0, keep_rows):
    """Log-alphas far apart: the first `keep` units of each row are surely kept, the rest surely dropped."""
    with torch.no_grad():
        for kind, value in l0.log_alpha.items():
            value.fill_(-50.0)
            value[..., : keep_rows[kind]] = 50.0


@pytest.mark.parametrize("name", ["llama-mha", "mistral-gqa", "llama-tied"])
def test_expected_params_is_the_real_count_at_both_ends(name):
    source = introspect(TINY_CONFIGS[name], "local", None)
    shape = source.shape
    target = Shape(shape.layers - 1, 32, shape.heads // 2, shape.kv_heads // 2, shape.intermediate // 2, shape.head_dim)
    _, l0 = _masks(name, target)
    _saturate(l0, {"layer": shape.layers, "hidden": shape.hidden, "kv_group": shape.kv_heads,
                   "intermediate": shape.intermediate})
    assert float(l0.expected_params(source.parameter_count).detach()) == pytest.approx(count_params(source, shape))
    _saturate(l0, {"layer": target.layers, "hidden": target.hidden, "kv_group": target.kv_heads,
                   "intermediate": target.intermediate})
    # GQA's k/v projections count kv heads: the count is exact, not 4 x heads
    assert float(l0.expected_params(source.parameter_count).detach()) == pytest.approx(count_params(source, target))
    assert l0.target_params(source.parameter_count) == pytest.approx(count_params(source, target))
    assert l0.expected_sparsity(source.parameter_count, count_params(source, shape)) == pytest.approx(
        1 - count_params(source, target) / count_params(source, shape))


def test_samples_and_deterministic_masks_use_the_hooks_layout():
    source, l0 = _masks("mistral-gqa", Shape(3, 32, 4, 1, 96, 8))
    shape = source.shape
    sample = l0.sample(torch.Generator().manual_seed(0))
    assert sample["query_head"].shape == (shape.layers, shape.heads)  # one value per query head
    assert torch.equal(sample["query_head"][:, 0], sample["query_head"][:, 3])  # repeated over a KV group
    assert sample["layer"].shape == (shape.layers,) and sample["hidden"].shape == (shape.hidden,)
    final = l0.deterministic()
    assert int(torch.count_nonzero(final["layer"])) == 3 and int(torch.count_nonzero(final["hidden"])) == 32
    assert ((final["query_head"] > 0).sum(1) == 4).all() and ((final["intermediate"] > 0).sum(1) == 96).all()


def test_constraint_targets_and_multipliers():
    _, l0 = _masks("llama-mha", Shape(3, 32, 4, 4, 88, 8))
    assert l0.final_fraction == {"layer": 0.75, "hidden": 0.5, "kv_group": 0.5, "intermediate": 0.5}
    assert l0.targets(0, 10)["hidden"] == 1.0 and l0.targets(10, 10)["hidden"] == 0.5
    with torch.no_grad():
        l0.lambda_1["hidden"].fill_(2.0)
    with torch.no_grad():
        gap = float(l0.expected_fractions()["hidden"]) - 0.75
        assert float(l0.lagrangian(5, 10)) == pytest.approx(2.0 * gap, rel=1e-5)
    with torch.no_grad():
        for value in l0.log_alpha.values():
            value.fill_(9.0)
    l0.clamp_()
    assert max(float(v.detach().max()) for v in l0.log_alpha.values()) == pytest.approx(math.log(1e2))


def test_the_lagrangian_charges_every_layer_its_own_gap():
    """Sheared-LLaMA's l0_module: lambda_1 g_l + lambda_2 g_l^2 per layer, averaged over layers. Layers at
    32 and 8 expected heads against a target of 20 pay ~0.127 (lambda_2 = 1); one gap of their average would
    pay ~0.0003, and nothing would push the layers towards the equal counts that the final top-k forces."""
    source, target = Shape(2, 64, 32, 32, 64, 2), Shape(2, 64, 20, 20, 64, 2)
    l0 = L0Masks(source, target, ["kv_group"], PARAMS)
    high, low = math.log(1e2), math.log(1e-2)  # the clamp range: log-alphas saturate there
    with torch.no_grad():
        l0.log_alpha["kv_group"][0].fill_(high)
        l0.log_alpha["kv_group"][1].fill_(low)
        l0.log_alpha["kv_group"][1, :8] = high
        l0.lambda_2["kv_group"].fill_(1.0)
    # keep probabilities by hand: sigmoid(log_alpha - beta * log(-l / r)), beta = 2/3, l = -0.1, r = 1.1
    kept_high = 1 / (1 + math.exp(-(high - 2 / 3 * math.log(0.1 / 1.1))))  # 0.99798...
    kept_low = 1 / (1 + math.exp(-(low - 2 / 3 * math.log(0.1 / 1.1))))  # 0.04716...
    gaps = [kept_high - 20 / 32, (8 * kept_high + 24 * kept_low) / 32 - 20 / 32]  # +0.3730, -0.3403
    expected = (gaps[0] ** 2 + gaps[1] ** 2) / 2
    assert expected == pytest.approx(0.1274, abs=1e-4)
    assert float(l0.lagrangian(step=10, warmup_steps=10)) == pytest.approx(expected, rel=1e-6)
    with torch.no_grad():
        l0.lambda_1["kv_group"].fill_(0.5)
    assert float(l0.lagrangian(step=10, warmup_steps=10)) == pytest.approx(expected + 0.5 * sum(gaps) / 2, rel=1e-6)
