"""A plan is checked against the model it will run on before any work: found, and the same model."""

import json

import pytest

from shearc.errors import UserError
from shearc.runtime.verify import locate_model, verify

from ..helpers import tiny_project


def test_the_source_is_found_next_to_the_plan_and_matched_field_by_field(tmp_path):
    plan_path = tiny_project(tmp_path, "mistral-gqa", {})
    verified = verify(plan_path)
    assert verified.model_dir == tmp_path / "mistral-gqa"
    assert verified.source.shape.kv_heads == 2 and verified.plan.plan_sha256


def test_every_field_that_differs_is_named_at_once(tmp_path):
    plan_path = tiny_project(tmp_path, "mistral-gqa", {})
    config_path = tmp_path / "mistral-gqa" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(num_hidden_layers=5, intermediate_size=256)
    config_path.write_text(json.dumps(config))
    with pytest.raises(UserError) as raised:
        verify(plan_path)
    paths = {problem.path for problem in raised.value.problems}
    assert {"source.fingerprint_fields.num_hidden_layers", "source.fingerprint_fields.intermediate_size"} <= paths
    assert "recompile the spec" in raised.value.title


def test_a_missing_source_is_refused_and_nothing_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert locate_model("nobody/no-such-model", tmp_path, None) is None
    plan_path = tiny_project(tmp_path, "llama-mha", {})
    for path in (tmp_path / "llama-mha").iterdir():
        path.unlink()
    with pytest.raises(UserError, match="shearc never downloads weights") as raised:
        verify(plan_path)
    assert raised.value.problems[0].path == "source.model"


def test_source_weights_that_cannot_be_read_are_refused_before_any_work(tmp_path, capsys):
    """A truncated safetensors file, a garbage one, or only pickled .bin weights: exit 2 naming the file."""
    from shearc.cli import main

    from ..helpers import tiny_project

    plan_path = tiny_project(tmp_path, "llama-mha", {"target": {"heads": 4}, "prune": {"method": "magnitude"}})
    weights = tmp_path / "llama-mha" / "model.safetensors"
    whole = weights.read_bytes()
    for damaged, message in ((whole[:-100], "truncated:"), (b"\x10" + whole[1:2000], "not a readable safetensors")):
        weights.write_bytes(damaged)
        assert main(["run", str(plan_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and str(weights) in err and "Traceback" not in err
    weights.unlink()
    (tmp_path / "llama-mha" / "pytorch_model.bin").write_bytes(b"pickle")
    assert main(["run", str(plan_path)]) == 2
    assert "only pickled weights (pytorch_model.bin); shearc loads safetensors only" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused_before_any_work(tmp_path, capsys):
    from shearc.cli import main

    from ..helpers import tiny_project, tiny_tokenizer

    plan_path = tiny_project(tmp_path, "llama-mha", {"target": {"heads": 4}, "prune": {"method": "magnitude"}})
    tiny_tokenizer(tmp_path / "tokenizer", [" ".join(f"word{i}" for i in range(600))])  # 603 tokens; the model 512
    assert main(["run", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "the tokenizer has 603 tokens, the source model embeds 512" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
