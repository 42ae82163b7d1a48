import math
import os
import stat

import pytest

from shearc.canonical import canonical_json, sha256_of, write_text_atomic
from shearc.errors import Problem, UserError


def test_canonical_json_ignores_key_order_and_refuses_nan():
    assert canonical_json({"b": 1, "a": [1.5, None]}) == '{"a":[1.5,null],"b":1}'
    assert sha256_of({"a": 1, "b": 2}) == sha256_of({"b": 2, "a": 1})
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})


def test_atomic_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    target = tmp_path / "deep" / "plan.json"
    write_text_atomic(target, "one")
    assert target.read_text() == "one"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~_umask()

    def crash(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr("shearc.canonical.os.replace", crash)
    with pytest.raises(OSError):
        write_text_atomic(target, "two")
    assert target.read_text() == "one"
    assert sorted(p.name for p in target.parent.iterdir()) == ["plan.json"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_user_error_lists_every_problem():
    error = UserError([Problem("bad", "a.b", "f.yaml", 3, 4), Problem("worse")], title="invalid spec")
    assert error.render().splitlines() == ["invalid spec (2 problems):", "  f.yaml:3:4: a.b: bad", "  worse"]


def test_atomic_directory_replaces_on_success_and_leaves_nothing_on_failure(tmp_path):
    from shearc.canonical import atomic_directory

    final = tmp_path / "model"
    with atomic_directory(final) as staging:
        (staging / "a.txt").write_text("one")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_directory(final) as staging:
        (staging / "a.txt").write_text("two")
        raise RuntimeError("crash mid-write")
    assert (final / "a.txt").read_text() == "one"  # the old one stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
