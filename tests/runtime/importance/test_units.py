import pytest
import torch

from shearc.compiler.families import Shape
from shearc.runtime.importance.scores import SIGNED_ESTIMATORS, magnitude_element_scores, taylor_element_scores
from shearc.runtime.importance.units import channel_scores, combine_members, select_masks

SOURCE = Shape(layers=3, hidden=8, heads=4, kv_heads=2, intermediate=6, head_dim=2)


def test_channel_scores_are_per_row_or_column_grouped_by_unit():
    elements = torch.arange(24.0).reshape(4, 6)  # 2 units of 2 rows along axis 0; 3 units of 2 columns along 1
    torch.testing.assert_close(channel_scores(elements, 0, 2, "sum"), elements.sum(1).reshape(2, 2))
    torch.testing.assert_close(channel_scores(elements, 1, 3, "sum"), elements.sum(0).reshape(3, 2))
    signed = elements - 12.0
    torch.testing.assert_close(channel_scores(signed, 0, 2, "abs"), signed.sum(1).abs().reshape(2, 2))


def _attention_layer(double=torch.float64):
    """The reference check's layer: hidden 4, 2 heads of head_dim 2; q/k/v rows and o columns are channels."""
    i, j = torch.meshgrid(torch.arange(4, dtype=double), torch.arange(4, dtype=double), indexing="ij")
    weights = {"q": 0.1 * (i + 1) - 0.05 * j, "k": 0.2 - 0.03 * (i + j), "v": 0.05 * (i - j),
               "o": 0.1 * (j + 1) - 0.02 * i}
    return weights, {"q": 0, "k": 0, "v": 0, "o": 1}


def _head_scores(elements, axes, finish, aggregation):
    members = [channel_scores(elements[name], axes[name], 2, finish) for name in ("q", "k", "v", "o")]
    return combine_members(members, aggregation)


@pytest.mark.parametrize(("shift", "estimator", "aggregation", "expected"), [
    # LLM-Pruner's TaylorImportance (hf_llama_pruner.py) run on this layer with G = 0.5 W + shift, H = G^2
    (0.01, "vector", "sum", [0.24620000000000003, 0.8606000000000001]),
    (0.01, "vector", "prod", [7.924023000000003e-07, 2.1961278860000028e-05]),
    (0.01, "vector", "max", [0.12210000000000001, 0.44720000000000015]),
    (0.01, "element-hessian", "sum", [0.003431270000000001, 0.046910870000000014]),
    (0.01, "element-hessian", "prod", [7.200683368476756e-15, 4.631060902979277e-12]),
    (0.01, "element-mix", "sum", [0.24448436500000004, 0.8371445650000002]),
    (0.01, "element-mix", "max", [0.12106890750000002, 0.43338880000000013]),
    (-0.04, "vector", "sum", [0.133, 0.5706000000000001]),  # mixed signs: |sum| per channel differs from sum |.|
    (-0.04, "vector", "prod", [8.690640000000006e-08, 1.9109706000000052e-07]),
    (-0.04, "element-first", "sum", [0.1395, 0.5778000000000001]),
    (-0.04, "element-first", "prod", [1.1439720000000007e-07, 9.937620000000012e-07]),
    (-0.04, "element-mix", "sum", [0.1388757525, 0.5656650750000001]),
])
def test_head_scores_match_llm_pruner(shift, estimator, aggregation, expected):
    weights, axes = _attention_layer()
    grads = {name: 0.5 * w + shift for name, w in weights.items()}
    elements = {name: taylor_element_scores(weights[name], grads[name], grads[name] ** 2, estimator).double()
                for name in weights}
    scores = _head_scores(elements, axes, "abs" if estimator in SIGNED_ESTIMATORS else "sum", aggregation)
    torch.testing.assert_close(scores, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize(("norm", "expected"), [("l1", [0.8200000000000001, 1.475]),
                                                ("l2", [0.11170000000000002, 0.4013000000000001])])
def test_magnitude_head_scores_match_llm_pruner(norm, expected):
    """MagnitudeImportance: per channel the sum of |w| or w^2, members reduced by their mean (its default)."""
    weights, axes = _attention_layer()
    elements = {name: magnitude_element_scores(w, norm).double() for name, w in weights.items()}
    torch.testing.assert_close(_head_scores(elements, axes, "sum", "mean"),
                               torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=0)


def test_a_kv_groups_query_rows_fold_onto_the_kv_channel_they_pair_with():
    q = torch.arange(1.0, 9.0).reshape(1, 8)  # one group: 2 query heads x head_dim 4, channel-major per head
    k = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    # channel c of both query heads meets k's channel c; products per channel, then summed
    assert combine_members([q, k], "prod").item() == (1 + 5) * 1 + (2 + 6) * 2 + (3 + 7) * 3 + (4 + 8) * 4
    assert combine_members([torch.ones(2, 3), torch.ones(2, 2)], "sum").tolist() == [5.0, 5.0]  # no fold: totals


def _scores():
    scores = {("layer", layer): torch.tensor([float(layer)]) for layer in range(3)}
    scores[("hidden", None)] = torch.arange(8.0)
    for layer in range(3):
        scores[("intermediate", layer)] = torch.tensor([5.0, 1.0, 4.0, 0.0, 3.0, 2.0]) + layer
        scores[("kv_group", layer)] = torch.tensor([1.0, 2.0])
        scores[("query_head", layer)] = torch.tensor([4.0, 3.0, 1.0, 2.0])
    return scores


def test_exact_counts_in_every_layer():
    target = Shape(layers=2, hidden=4, heads=2, kv_heads=1, intermediate=3, head_dim=2)
    masks = select_masks(_scores(), SOURCE, target)
    assert masks["layer"].tolist() == [0.0, 1.0, 1.0]
    assert masks["hidden"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (masks["intermediate"].sum(1) == 3).all()
    assert masks["intermediate"][0].tolist() == [1, 0, 1, 0, 1, 0]
    assert masks["query_head"][0].tolist() == [0, 0, 1, 1]  # KV group 1 scores higher; both its heads stay


def test_query_heads_inside_kept_groups():
    target = Shape(layers=3, hidden=8, heads=2, kv_heads=2, intermediate=6, head_dim=2)
    masks = select_masks(_scores(), SOURCE, target)
    assert set(masks) == {"query_head"}
    assert masks["query_head"][1].tolist() == [1, 0, 0, 1]  # the better head of each group


def test_dead_units_stay_dead():
    target = Shape(layers=3, hidden=8, heads=4, kv_heads=2, intermediate=2, head_dim=2)
    alive = {"intermediate": torch.tensor([[0, 1, 1, 1, 1, 1]] * 3, dtype=torch.float)}
    masks = select_masks(_scores(), SOURCE, target, alive=alive)
    assert masks["intermediate"][0].tolist() == [0, 0, 1, 0, 1, 0]  # unit 0 scores best but was removed
