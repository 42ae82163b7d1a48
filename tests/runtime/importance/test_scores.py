import pytest
import torch

from shearc.runtime.importance.scores import aggregate, magnitude_element_scores, taylor_element_scores

W = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
G = torch.tensor([[0.1, 0.2], [-0.4, 0.0]])
F = torch.tensor([[1.0, 0.5], [2.0, 1.0]])


def test_taylor_estimators():
    torch.testing.assert_close(taylor_element_scores(W, G, None, "vector"), W * G)
    torch.testing.assert_close(taylor_element_scores(W, G, None, "element-first"), (W * G).abs())
    torch.testing.assert_close(taylor_element_scores(W, G, F, "element-hessian"), (W * F * W).abs())
    torch.testing.assert_close(taylor_element_scores(W, G, F, "element-mix"), (W * G - 0.5 * W * F * W).abs())
    with pytest.raises(ValueError, match="Fisher"):
        taylor_element_scores(W, G, None, "element-mix")


def test_magnitude():
    torch.testing.assert_close(magnitude_element_scores(W, "l1"), W.abs())
    torch.testing.assert_close(magnitude_element_scores(W, "l2"), W * W)


@pytest.mark.parametrize(("how", "expected"), [("sum", [4.0, 6.0]), ("mean", [2.0, 3.0]), ("prod", [3.0, 8.0]),
                                                ("max", [3.0, 4.0]), ("last", [3.0, 4.0])])
def test_aggregation(how, expected):
    members = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])]
    assert aggregate(members, how).tolist() == expected
