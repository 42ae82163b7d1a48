from dataclasses import replace

import pytest

from shearc.compiler.shape import budget_shape, count_params, exact_shape
from shearc.compiler.source import hf_config, introspect, meta_model, read_config
from shearc.compiler.spec import TargetSpec

from ..helpers import SPECS, TINY_CONFIGS, write_model_dir


def _source(path):
    return introspect(read_config(path), "card", path)


@pytest.fixture(scope="module")
def llama7b():
    return _source(SPECS / "models" / "llama-2-7b.json")


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ({}, 6_738_415_616),
        (dict(layers=24, hidden=2048, heads=16, kv_heads=16, intermediate=5504), 1_345_423_360),
        (dict(hidden=2560, heads=20, kv_heads=20, intermediate=6912), 2_701_560_320),
    ],
)
def test_sheared_llama_parameter_counts(llama7b, shape, expected):
    assert count_params(llama7b, replace(llama7b.shape, **shape)) == expected


@pytest.mark.parametrize("card", ["llama-2-13b", "llama-3-8b", "mistral-7b", "qwen2-7b"])
def test_count_matches_meta_model_for_every_card(card):
    source = _source(SPECS / "models" / f"{card}.json")
    assert count_params(source, source.shape) == sum(p.numel() for p in meta_model(source.config).parameters())


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_count_matches_meta_model_at_a_pruned_shape(tmp_path, name):
    source = _source(write_model_dir(tmp_path, name) / "config.json")
    shape = replace(source.shape, layers=source.shape.layers - 1, intermediate=source.shape.intermediate // 2,
                    kv_heads=source.shape.kv_heads // 2, heads=source.shape.heads // 2, hidden=32)
    config = source.adapter.config_for(source.config, shape)
    assert count_params(source, shape) == sum(p.numel() for p in meta_model(config).parameters())


def test_omitted_dimensions_keep_the_source(tmp_path):
    mha = _source(write_model_dir(tmp_path, "llama-mha") / "config.json")
    gqa = _source(write_model_dir(tmp_path, "mistral-gqa") / "config.json")
    # a multi-head source stays multi-head: kv_heads follows heads
    assert exact_shape(mha, TargetSpec(heads=4)).kv_heads == 4
    # a GQA source keeps its KV heads unless told otherwise
    assert exact_shape(gqa, TargetSpec(heads=4)).kv_heads == 2
    assert exact_shape(gqa, TargetSpec(intermediate=96)) == replace(gqa.shape, intermediate=96)


def test_budget_gives_the_largest_accepted_shape_within_budget(llama7b):
    budget = 1_300_000_000
    shape, problems = budget_shape(llama7b, budget, ["head", "hidden", "intermediate"], 64)
    assert not problems
    assert count_params(llama7b, shape) <= budget
    assert shape.layers == 32 and shape.hidden % 64 == 0 and shape.hidden % shape.heads == 0
    hf_config(llama7b.adapter.config_for(llama7b.config, shape))  # transformers accepts it
    # one step wider on every pruned width no longer fits
    wider = replace(shape, hidden=shape.hidden + 64, intermediate=shape.intermediate + 64)
    assert count_params(llama7b, wider) > budget


def test_budget_with_depth_only_removes_layers(llama7b):
    shape, problems = budget_shape(llama7b, 5_000_000_000, ["layer"], 64)
    assert not problems
    assert (shape.hidden, shape.heads, shape.intermediate) == (4096, 32, 11008)
    assert count_params(llama7b, shape) <= 5e9 < count_params(llama7b, replace(shape, layers=shape.layers + 1))


@pytest.mark.parametrize(("budget", "needle"), [(7_000_000_000, "not below"), (1_000, "below the smallest")])
def test_unreachable_budgets(llama7b, budget, needle):
    shape, problems = budget_shape(llama7b, budget, ["head", "intermediate"], 64)
    assert shape is None and needle in problems[0].message and problems[0].path == "target.params"


@pytest.mark.parametrize(("text", "value"), [("1.3B", 1_300_000_000), ("350m", 350_000_000), (1.3e9, 1_300_000_000),
                                             (1234, 1234)])
def test_parameter_budget_notation(text, value):
    assert TargetSpec(params=text).params == value
