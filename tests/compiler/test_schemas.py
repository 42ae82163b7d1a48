import json

import jsonschema

from shearc.cli import main
from shearc.compiler.schemas import stale_schemas
from shearc.plan import Plan, plan_schema, schema_problems

from ..helpers import REPO


def test_checked_in_schemas_are_current():
    assert stale_schemas(REPO / "schemas") == []


def test_schema_check_detects_a_stale_file(tmp_path, capsys):
    assert main(["schema", "--dir", str(tmp_path)]) == 0
    assert main(["schema", "--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "spec.schema.json").write_text("{}")
    assert main(["schema", "--check", "--dir", str(tmp_path)]) == 2
    assert "spec.schema.json" in capsys.readouterr().err


def test_plan_schema_requires_every_field():
    """A plan that leaves out a number is invalid: the runtime never falls back on a default."""
    golden = json.loads((REPO / "tests" / "golden" / "sheared_llama_1.3b.plan.json").read_text())
    jsonschema.validate(golden, plan_schema())
    del golden["stages"][0]["params"]["temperature"]
    problems = schema_problems(golden, "plan.json")
    assert [(p.path, p.message) for p in problems] == [
        ("stages.0.params", "'temperature' is a required property")]


def test_spec_schema_lists_method_names():
    spec = json.loads((REPO / "schemas" / "spec.schema.json").read_text())
    text = json.dumps(spec)
    for name in ("hard-concrete", "taylor", "magnitude", "constant", "dynamic-batch-loading", "drpruning",
                 "none", "full", "lora"):
        assert f'"const": "{name}"' in text


def test_plan_model_round_trips_its_schema_example():
    golden = json.loads((REPO / "tests" / "golden" / "tiny_mistral-gqa.plan.json").read_text())
    assert Plan.model_validate(golden).model_dump(mode="json") == golden
