import pytest

from shearc.compiler.yaml_source import dotted, parse_yaml
from shearc.errors import UserError


def test_marks_point_at_keys_and_items():
    loaded = parse_yaml("a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\n", "f.yaml")
    assert loaded.marks[("a", "b")] == (2, 3)
    assert loaded.marks[("a", "c", 1)] == (5, 7)
    assert loaded.marks[("a", "c", 1, "d")] == (5, 8)
    # a path absent from the file falls back to its deepest present parent
    assert loaded.locate(("a", "c", 1, "zzz")) == (5, 7)


def test_dotted_paths():
    assert dotted(("data", "domains", 2, "weight")) == "data.domains[2].weight"


@pytest.mark.parametrize(
    ("text", "needle", "line"),
    [
        ("a: 1\na: 2\n", "duplicate key 'a'", 2),
        ("a: !!python/object/apply:os.system ['echo hi']\n", "safe_load", 1),
        ("a: [1, 2\n", "YAML error", 2),
        ("- 1\n- 2\n", "expected a mapping", 1),
        ("", "empty", None),
        # found by tests/test_fuzz.py: each was a traceback
        ("\x1f", "special characters are not allowed", None),
        ("a: &x [*x]\n", "refers to itself through an alias", 1),
        ("a: " + "[" * 70 + "]" * 70 + "\n", "nested more than 64 levels deep", 1),
    ],
)
def test_bad_documents_are_located_user_errors(text, needle, line):
    with pytest.raises(UserError) as caught:
        parse_yaml(text, "f.yaml")
    problem = caught.value.problems[0]
    assert needle in problem.message
    assert problem.file == "f.yaml"
    assert problem.line == line
