from types import SimpleNamespace

import pytest

from shearc.compiler.passes import Pass, parse_dotted, run_passes
from shearc.compiler.yaml_source import parse_yaml
from shearc.errors import Problem, UserError

LOADED = parse_yaml("target:\n  heads: 99\n", "s.yaml")


def test_parse_dotted():
    assert parse_dotted("data.domains[12].weight") == ("data", "domains", 12, "weight")


def test_problems_are_located_and_name_the_pass():
    failing = Pass("check-it", (), (), lambda ctx: [Problem("too many", "target.heads")])
    with pytest.raises(UserError) as caught:
        run_passes([failing], SimpleNamespace(), LOADED)
    assert "pass check-it" in caught.value.title
    problem = caught.value.problems[0]
    assert (problem.file, problem.line, problem.column, problem.path) == ("s.yaml", 2, 3, "target.heads")


def test_a_pass_must_find_what_it_needs_and_provide_what_it_promises():
    with pytest.raises(AssertionError, match="needs"):
        run_passes([Pass("late", ("graph",), (), lambda ctx: [])], SimpleNamespace(graph=None), LOADED)
    with pytest.raises(AssertionError, match="did not provide"):
        run_passes([Pass("lazy", (), ("graph",), lambda ctx: [])], SimpleNamespace(graph=None), LOADED)
