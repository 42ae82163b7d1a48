from shearc.compiler.registry import PRUNE_METHODS
from shearc.runtime.stages import STAGES
from shearc.runtime.stages.prune import PRUNE_IMPLEMENTATIONS


def test_runtime_implements_exactly_the_compiler_prune_methods():
    assert set(PRUNE_IMPLEMENTATIONS.names()) == set(PRUNE_METHODS.names())


def test_stage_names_are_the_plans():
    assert set(STAGES.names()) <= {"prune", "finalize", "recover", "evaluate", "export"}
