"""How windows begin is decided at compile time: the spec, else the source's tokenizer, else the family, and the
run refuses a tokenizer that begins texts otherwise."""

import json

import pytest

from shearc.cli import main
from shearc.compiler.families import ADAPTERS
from shearc.compiler.window_start import adds_bos, decide, find_tokenizer, window_start_problems
from shearc.errors import Problem

from ..helpers import WORDS, tiny_project, tiny_tokenizer

LLAMA, QWEN3 = ADAPTERS.get("LlamaForCausalLM"), ADAPTERS.get("Qwen3ForCausalLM")


@pytest.fixture
def tokenizers(tmp_path):
    return {adds: tiny_tokenizer(tmp_path / f"bos-{adds}", [" ".join(WORDS)], adds_bos=adds) for adds in (True, False)}


def test_the_tokenizer_is_asked_how_it_begins_a_text(tokenizers):
    assert adds_bos(tokenizers[True]) and not adds_bos(tokenizers[False])
    assert decide(None, tokenizers[True], {}, QWEN3).as_dict() == {"window_bos": 1, "window_bos_origin": "tokenizer"}
    assert decide(None, tokenizers[False], {}, LLAMA).as_dict() == {"window_bos": None,
                                                                     "window_bos_origin": "tokenizer"}


def test_the_spec_overrides_the_tokenizer(tokenizers):
    assert decide(False, tokenizers[True], {}, LLAMA).as_dict() == {"window_bos": None, "window_bos_origin": "spec"}
    assert decide(True, tokenizers[False], {}, LLAMA).as_dict() == {"window_bos": 1, "window_bos_origin": "spec"}
    refused = decide(True, None, {"bos_token_id": None}, LLAMA)
    assert isinstance(refused, Problem) and refused.path == "data.window_bos" and "no BOS" in refused.message


def test_without_a_tokenizer_the_family_decides_and_the_plan_says_so():
    llama = decide(None, None, {"bos_token_id": 1}, LLAMA)
    assert (llama.bos, llama.origin) == (1, "family") and "no tokenizer found at compile time" in llama.warning
    qwen = decide(None, None, {"bos_token_id": 151643}, QWEN3)
    assert (qwen.bos, qwen.origin) == (None, "family")


def test_the_run_refuses_a_tokenizer_that_begins_texts_otherwise(tokenizers):
    assert window_start_problems(1, "tokenizer", tokenizers[True], "tok") == []
    assert window_start_problems(None, "spec", tokenizers[True], "tok") == []  # the spec's choice stands
    (problem,) = window_start_problems(1, "family", tokenizers[False], "tok")
    assert "puts nothing in front of a text" in problem.message and "recompile" in problem.message
    (problem,) = window_start_problems(2, "spec", tokenizers[True], "tok")
    assert "BOS is 1" in problem.message


def test_find_tokenizer_reads_local_directories_only(tmp_path, tokenizers):
    assert find_tokenizer("bos-True", tmp_path, False).bos_token_id == 1
    assert find_tokenizer("no-such-folder/at-all", tmp_path, False) is None


def test_compile_writes_the_decision_and_explain_shows_it(tmp_path, capsys):
    plan_path = tiny_project(tmp_path, "llama-mha", {}, adds_bos=True)
    data = json.loads(plan_path.read_text())["data"]
    assert (data["window_bos"], data["window_bos_origin"]) == (1, "tokenizer")
    assert main(["explain", str(plan_path)]) == 0
    assert "windows begin with BOS (token 1), as the tokenizer begins a text" in capsys.readouterr().out


def test_a_plan_of_an_earlier_version_is_refused_with_recompile(tmp_path, capsys):
    plan_path = tiny_project(tmp_path, "llama-mha", {})
    plan = json.loads(plan_path.read_text())
    plan["plan_version"] = [5, 0]
    plan_path.write_text(json.dumps(plan))
    assert main(["run", str(plan_path)]) == 2
    assert "recompile" in capsys.readouterr().err
