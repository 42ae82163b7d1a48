import typing

import pytest

from shearc.compiler.spec import Spec
from shearc.sections import MIXERS, PRUNE_METHODS, RECOVERIES


@pytest.mark.parametrize(
    ("registry", "expected"),
    [(PRUNE_METHODS, {"hard-concrete", "taylor", "magnitude", "activation"}),
     (MIXERS, {"constant", "dynamic-batch-loading", "drpruning"}),
     (RECOVERIES, {"none", "full", "lora", "distill"})],
)
def test_registry_names_are_the_yaml_method_names(registry, expected):
    assert set(registry.names()) == expected
    for name in registry.names():
        model = registry.get(name)
        assert typing.get_args(model.model_fields["method"].annotation) == (name,)


def test_every_spec_field_is_described():
    missing = []

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            if not field.description and name != "method":
                missing.append(f"{prefix}{name}")
            for arg in typing.get_args(field.annotation) or (field.annotation,):
                for inner in typing.get_args(arg) or (arg,):
                    if isinstance(inner, type) and hasattr(inner, "model_fields") and inner is not model:
                        walk(inner, f"{prefix}{name}.")

    walk(Spec, "")
    assert not missing, missing
