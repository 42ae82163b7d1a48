"""The typed plan: what the runtime parses is what the compiler wrote, field for field."""

import json

import pytest

from shearc.canonical import sha256_of
from shearc.plan import Plan, PrunePlan, read_plan

from ..helpers import REPO

GOLDEN = sorted((REPO / "tests" / "golden").glob("*.plan.json"))


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_parsing_and_dumping_a_plan_gives_it_back_exactly(path):
    """The run directory's plan.json and the model's are dumped from the parsed plan: they must hash the same."""
    written = json.loads(path.read_text())
    plan = Plan.model_validate(written)
    assert plan.as_json() == written
    assert sha256_of({k: v for k, v in plan.as_json().items() if k != "plan_sha256"}) == plan.plan_sha256


def test_stages_are_found_by_name():
    path = REPO / "tests" / "golden" / "tiny_llm_pruner.plan.json"
    plan = read_plan(path)
    assert isinstance(plan.prune, PrunePlan) and plan.prune.params.method == "taylor"
    assert plan.stage("finalize").check.windows > 0
    assert plan.stage("nothing") is None
    assert plan.stages[0].stage == "prune"
