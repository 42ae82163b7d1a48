"""The dependency graph on MHA, GQA, tied embeddings and biased q/k/v, checked against real modules."""

import pytest
import torch

from shearc.compiler.graph import build_graph, summarize_groups, unit_widths
from shearc.compiler.source import introspect, meta_model, read_config

from ..helpers import TINY_CONFIGS, write_model_dir


def _source(tmp_path, name):
    path = write_model_dir(tmp_path, name) / "config.json"
    return introspect(read_config(path), "local", path)


def _groups(source):
    return {g.kind: g for g in summarize_groups(build_graph(source), source.adapter.layer_prefix)}


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_every_parameter_is_owned_by_a_layer_or_the_hidden_unit(tmp_path, name):
    source = _source(tmp_path, name)
    graph = build_graph(source)
    model = meta_model(source.config)
    owners: dict[str, set[str]] = {}
    for node in graph.nodes:
        if node[0] == "slice":
            owners.setdefault(node[1], set()).update(unit[1] for unit in graph.predecessors(node))
    real = {n: p for n, p in model.named_parameters()}
    assert set(owners) == set(source.adapter.split_fused(real, source.shape))  # a fused weight as its parts
    for tensor, kinds in owners.items():
        assert kinds & {"layer", "hidden"}, tensor


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_params_per_unit_matches_a_brute_force_count(tmp_path, name):
    """Shrinking one unit of each kind in a real module removes exactly params_per_unit parameters."""
    source = _source(tmp_path, name)
    config = TINY_CONFIGS[name]
    shape = source.shape
    groups = _groups(source)
    total = sum(p.numel() for p in meta_model(config).parameters())

    def count(**changes):
        changed = {**config, **changes, "head_dim": shape.head_dim}
        if "layer_types" in changed:  # one per layer
            changed["layer_types"] = changed["layer_types"][:changed["num_hidden_layers"]]
        return sum(p.numel() for p in meta_model(changed).parameters())

    # transformers wants hidden divisible by heads, so remove `heads` channels (counts are linear in hidden)
    removed = shape.heads
    assert total - count(hidden_size=shape.hidden - removed) == removed * groups["hidden"].params_per_unit
    # per-layer units: a config change removes one unit in every layer
    per_layer = groups["intermediate"].params_per_unit
    assert total - count(intermediate_size=shape.intermediate - 1) == per_layer * shape.layers
    assert total - count(num_hidden_layers=shape.layers - 1) == groups["layer"].params_per_unit
    gone = shape.kv_heads // 2  # halving keeps hidden divisible by heads
    fewer_groups = count(num_key_value_heads=shape.kv_heads - gone,
                         num_attention_heads=shape.heads - gone * shape.group_size)
    assert total - fewer_groups == gone * groups["kv_group"].params_per_unit * shape.layers


def test_mha_has_no_separate_query_head_unit(tmp_path):
    source = _source(tmp_path, "llama-mha")
    assert "query_head" not in unit_widths(source.shape)
    groups = _groups(source)
    assert groups["kv_group"].count == 8 and groups["kv_group"].scopes == 4


def test_gqa_kv_group_owns_its_query_heads(tmp_path):
    source = _source(tmp_path, "mistral-gqa")  # 8 query heads over 2 KV heads, head_dim 8
    graph = build_graph(source)
    kv_unit = ("unit", "kv_group", 0)
    widths = {(v[1].rsplit(".", 2)[-2], v[2]): d["width"] for _, v, d in graph.out_edges(kv_unit, data=True)
              if v[0] == "slice"}
    assert widths[("k_proj", 0)] == 8 and widths[("v_proj", 0)] == 8
    assert widths[("q_proj", 0)] == 4 * 8 and widths[("o_proj", 1)] == 4 * 8
    # removing a KV group forces removing its query heads; not the other way round
    assert graph.has_edge(kv_unit, ("unit", "query_head", 0))
    assert not graph.has_edge(("unit", "query_head", 0), kv_unit)
    assert _groups(source)["query_head"].count == 8


def test_tied_embeddings_share_one_tensor(tmp_path):
    source = _source(tmp_path, "llama-tied")
    assert source.tied and "lm_head.weight" not in source.outer_params
    hidden = _groups(source)["hidden"]
    assert "model.embed_tokens.weight[axis 1]" in hidden.tensors
    assert not any(t.startswith("lm_head") for t in hidden.tensors)
    model = meta_model(source.config)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_biased_qkv_follow_their_heads(tmp_path):
    source = _source(tmp_path, "qwen2-bias")
    assert {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"} <= set(source.block_params)
    kv = _groups(source)["kv_group"]
    for bias in ("q_proj", "k_proj", "v_proj"):
        assert f"model.layers.*.self_attn.{bias}.bias[axis 0]" in kv.tensors
    # biases belong to heads, not to the hidden channel
    assert not any(".bias" in t for t in _groups(source)["hidden"].tensors)


def test_graph_is_built_on_meta_only(tmp_path):
    source = _source(tmp_path, "llama-mha")
    model = meta_model(source.config)
    assert all(p.device == torch.device("meta") for p in model.parameters())
