"""Importance methods read everything from their plan section, and score every unit kind of the graph."""

import pytest
import torch

from shearc.compiler.graph import build_graph
from shearc.compiler.source import introspect
from shearc.runtime.importance.methods import IMPORTANCE_METHODS, MagnitudeImportance, TaylorImportance
from shearc.runtime.importance.scores import magnitude_element_scores
from shearc.runtime.importance.units import unit_scores
from shearc.sections import PRUNE_METHODS, ActivationPruneSpec, MagnitudePruneSpec, TaylorPruneSpec

from ...helpers import TINY_CONFIGS
from .test_selection import _samples, _setup


def test_every_score_based_prune_method_is_an_importance_method():
    learned = {name for name in PRUNE_METHODS.names() if PRUNE_METHODS.get(name).trains_source}
    assert set(IMPORTANCE_METHODS.names()) == set(PRUNE_METHODS.names()) - learned


def test_taylor_reads_its_calibration_rounds_and_sign_from_the_plan():
    vector = TaylorImportance(TaylorPruneSpec(method="taylor", estimator="vector", calibration_samples=3,
                                              calibration_seq_len=20, iterations=4))
    assert vector.calibration == (3, 20) and vector.rounds == 4 and vector.signed
    assert not TaylorImportance(TaylorPruneSpec(method="taylor")).signed
    magnitude = MagnitudeImportance(MagnitudePruneSpec(method="magnitude"))
    assert magnitude.calibration is None and magnitude.rounds == 1 and not magnitude.signed


@pytest.mark.parametrize("method", [TaylorPruneSpec(method="taylor"), MagnitudePruneSpec(method="magnitude", norm="l1"),
                                    ActivationPruneSpec(method="activation")], ids=lambda m: m.method)
def test_unit_scores_cover_every_unit_of_the_graph(method):
    config, source, model = _setup("mistral-gqa")
    graph = build_graph(source)
    scores = IMPORTANCE_METHODS.get(method.method)(method).unit_scores(
        model, source.adapter, graph, lambda: _samples(config["vocab_size"]), batch_size=2)
    units = {(data["kind"], data["layer"]) for node, data in graph.nodes(data=True) if node[0] == "unit"}
    assert set(scores) == units
    assert all(torch.isfinite(s).all() and (s >= 0).all() for s in scores.values())


def test_magnitude_scores_are_the_graph_gathering_of_its_element_scores():
    config = TINY_CONFIGS["llama-mha"]
    source = introspect(config, "local", None)
    _, _, model = _setup("llama-mha")
    graph = build_graph(source)
    params = MagnitudePruneSpec(method="magnitude", aggregation="max")
    scores = MagnitudeImportance(params).unit_scores(model, source.adapter, graph, list, batch_size=1)
    elements = {name: magnitude_element_scores(w, "l2") for name, w in model.named_parameters()}
    expected = unit_scores(graph, elements, aggregation="max", finish="sum")
    for unit, value in expected.items():
        torch.testing.assert_close(scores[unit], value)
