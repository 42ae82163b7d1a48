import pytest

from shearc.registry import Registry


def test_registering_a_name_twice_raises():
    registry = Registry("thing")
    registry.register("a")(object())
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(object())
    with pytest.raises(KeyError, match="known: a"):
        registry.get("b")
