import torch

from shearc.compiler.adapters import Shape
from shearc.runtime.importance.units import select_masks, slice_scores

SOURCE = Shape(layers=3, hidden=8, heads=4, kv_heads=2, intermediate=6, head_dim=2)


def test_slice_scores_sum_each_units_width():
    elements = torch.arange(24.0).reshape(4, 6)  # 2 units of width 2 along axis 0
    assert slice_scores(elements, 0, 2, "sum").tolist() == [elements[:2].sum().item(), elements[2:].sum().item()]
    assert slice_scores(elements, 1, 3, "sum").tolist() == [elements[:, 0:2].sum().item(),
                                                            elements[:, 2:4].sum().item(),
                                                            elements[:, 4:6].sum().item()]
    assert slice_scores(-elements, 0, 2, "abs").tolist() == slice_scores(elements, 0, 2, "sum").tolist()
    assert slice_scores(torch.full((4, 1), 4.0), 0, 1, "sqrt").tolist() == [4.0]


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
    assert masks["head"][0].tolist() == [0, 0, 1, 1]  # KV group 1 scores higher; both its heads stay


def test_query_heads_inside_kept_groups():
    target = Shape(layers=3, hidden=8, heads=2, kv_heads=2, intermediate=6, head_dim=2)
    masks = select_masks(_scores(), SOURCE, target)
    assert set(masks) == {"head"}
    assert masks["head"][1].tolist() == [1, 0, 0, 1]  # the better head of each group


def test_dead_units_stay_dead():
    target = Shape(layers=3, hidden=8, heads=4, kv_heads=2, intermediate=2, head_dim=2)
    alive = {"intermediate": torch.tensor([[0, 1, 1, 1, 1, 1]] * 3, dtype=torch.float)}
    masks = select_masks(_scores(), SOURCE, target, alive=alive)
    assert masks["intermediate"][0].tolist() == [0, 0, 1, 0, 1, 0]  # unit 0 scores best but was removed
