import pytest

from shearc.runtime.importance.methods import IMPORTANCE_METHODS
from shearc.runtime.stages import STAGES
from shearc.runtime.stages.prune import PRUNE_IMPLEMENTATIONS, learn_masks, scored_masks


def test_stage_names_are_the_plans():
    assert set(STAGES.names()) <= {"prune", "finalize", "recover", "evaluate", "export"}


@pytest.mark.parametrize("name", PRUNE_IMPLEMENTATIONS.names())
def test_each_prune_method_learns_or_scores(name):
    """hard-concrete learns its masks; every importance method's masks come from its scores."""
    expected = learn_masks if name == "hard-concrete" else scored_masks
    assert PRUNE_IMPLEMENTATIONS.get(name) is expected
    assert (name in IMPORTANCE_METHODS) == (name != "hard-concrete")
