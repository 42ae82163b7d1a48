"""Every extension point has a registry on each side of the plan, and the two hold the same names.

A method added to the spec (shearc/sections) but not to the runtime, or the other way round, fails
here; `shearc run` refuses such a plan before any work (runtime/run.py `unsupported`).
"""

import pytest

from shearc.registry import Registry
from shearc.runtime.mixers import MIXER_IMPLEMENTATIONS
from shearc.runtime.stages.prune import PRUNE_IMPLEMENTATIONS, RECONSTRUCTION_IMPLEMENTATIONS
from shearc.runtime.stages.recover import RECOVERY_IMPLEMENTATIONS
from shearc.sections import MIXERS, PRUNE_METHODS, RECONSTRUCTIONS, RECOVERIES, TrainingStageSpec

# extension point -> (spec sections, runtime implementations, names that plan no runtime work)
EXTENSION_POINTS = {
    "prune method": (PRUNE_METHODS, PRUNE_IMPLEMENTATIONS, frozenset()),
    "recovery method": (RECOVERIES, RECOVERY_IMPLEMENTATIONS, frozenset({"none"})),  # none plans no stage
    "mixer": (MIXERS, MIXER_IMPLEMENTATIONS, frozenset()),
    "reconstruction method": (RECONSTRUCTIONS, RECONSTRUCTION_IMPLEMENTATIONS, frozenset()),
}


def half_added(sections: Registry, implementations: Registry, planless: frozenset[str]) -> set[str]:
    """Names registered on one side only."""
    return set(sections.names()) - planless ^ set(implementations.names())


@pytest.mark.parametrize("point", EXTENSION_POINTS)
def test_spec_and_runtime_register_the_same_names(point):
    assert half_added(*EXTENSION_POINTS[point]) == set()


def test_a_method_added_to_one_side_only_is_caught():
    sections, implementations, planless = EXTENSION_POINTS["prune method"]
    spec_only = Registry("prune method")
    for name in (*sections.names(), "half-added"):
        spec_only.register(name)(object)
    runtime_only = Registry("prune method implementation")
    for name in (*implementations.names(), "half-added"):
        runtime_only.register(name)(object)
    assert half_added(spec_only, implementations, planless) == {"half-added"}
    assert half_added(sections, runtime_only, planless) == {"half-added"}


@pytest.mark.parametrize("name", PRUNE_METHODS.names())
def test_every_prune_method_says_its_units_and_its_cost(name):
    """The compiler's estimate and feasibility passes ask the method's own section, never an if/elif."""
    section = PRUNE_METHODS.get(name)
    assert section.units and section.units <= {"layer", "hidden", "kv_group", "query_head", "intermediate"}
    assert isinstance(section.trains_source, bool)
    assert "cost" in vars(section)


@pytest.mark.parametrize("name", [n for n in RECOVERIES.names() if n != "none"])
def test_every_recovery_method_says_its_cost_and_whether_its_base_trains(name):
    section = RECOVERIES.get(name)
    assert issubclass(section, TrainingStageSpec)
    assert isinstance(section(method=name).frozen_base, bool) and "cost" in vars(section)
