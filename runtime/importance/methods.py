"""Importance methods: one class per score-based `prune.method`, registered under its YAML name.

    prune: {method: taylor, estimator: element-first}   # TaylorImportance (LLM-Pruner)
    prune: {method: magnitude, norm: l2}                 # MagnitudeImportance
    prune: {method: activation}                          # ActivationImportance (Minitron)

A method turns the (masked) source into one score per prunable unit: {(kind, layer or None):
scores}, the kinds of the dependency graph. selection.py keeps the top ones per layer. Methods
that score weight elements gather them along the graph as LLM-Pruner scores a coupled group
(ElementwiseImportance); a method may also score units directly from activations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

import networkx as nx
import torch

from shearc.compiler.families import FamilyAdapter
from shearc.registry import Registry
from shearc.sections import ActivationPruneSpec, MagnitudePruneSpec, TaylorPruneSpec

from .activations import ActivationStatistics
from .gradients import accumulate_gradients, in_batches
from .scores import SIGNED_ESTIMATORS, magnitude_element_scores, taylor_element_scores
from .units import unit_scores

UnitScores = dict[tuple[str, int | None], torch.Tensor]
Calibration = Callable[[], Iterable[torch.Tensor]]


class ImportanceMethod(ABC):
    def __init__(self, params: Any) -> None:
        self.params = params  # the plan's prune section for this method (shearc.sections.prune)

    @property
    def calibration(self) -> tuple[int, int] | None:
        """(windows, tokens per window) of training text the method reads; None when it reads none."""
        return None

    @property
    def rounds(self) -> int:
        """Prune in this many equal rounds, re-scoring the units still alive in between."""
        return 1

    @abstractmethod
    def unit_scores(self, model: torch.nn.Module, adapter: FamilyAdapter, graph: nx.DiGraph, calibration: Calibration,
                    batch_size: int) -> UnitScores:
        """One score per unit of every kind in `graph`; higher is more important."""


class ElementwiseImportance(ImportanceMethod):
    """Scores every weight element, then each unit from its tensors' slices (units.unit_scores)."""

    @property
    def signed(self) -> bool:
        """Whether element scores carry a sign, summed over each channel before |.| (LLM-Pruner's vectorize)."""
        return False

    @abstractmethod
    def element_scores(self, model: torch.nn.Module, calibration: Calibration, batch_size: int
                       ) -> dict[str, torch.Tensor]:
        """Parameter name -> a score per element."""

    def unit_scores(self, model: torch.nn.Module, adapter: FamilyAdapter, graph: nx.DiGraph, calibration: Calibration,
                    batch_size: int) -> UnitScores:
        elements = adapter.split_fused(self.element_scores(model, calibration, batch_size),
                                       adapter.shape_of(model.config))  # the graph's tensors are the parts
        return unit_scores(graph, elements, aggregation=self.params.aggregation,
                           finish="abs" if self.signed else "sum")


IMPORTANCE_METHODS: Registry[type[ImportanceMethod]] = Registry("importance method")


@IMPORTANCE_METHODS.register("taylor")
class TaylorImportance(ElementwiseImportance):
    params: TaylorPruneSpec

    @property
    def signed(self) -> bool:
        return self.params.estimator in SIGNED_ESTIMATORS

    @property
    def calibration(self) -> tuple[int, int]:
        return self.params.calibration_samples, self.params.calibration_seq_len

    @property
    def rounds(self) -> int:
        return self.params.iterations

    def element_scores(self, model: torch.nn.Module, calibration: Calibration, batch_size: int
                       ) -> dict[str, torch.Tensor]:
        weights = dict(model.named_parameters())
        grads, fisher = accumulate_gradients(model, calibration(), second_order=self.params.second_order,
                                             batch_size=batch_size)
        # Each gradient is dropped once scored: the scores take its place instead of adding to it.
        return {name: taylor_element_scores(w, grads.pop(name), None if fisher is None else fisher.pop(name),
                                            self.params.estimator) for name, w in weights.items()}


@IMPORTANCE_METHODS.register("magnitude")
class MagnitudeImportance(ElementwiseImportance):
    params: MagnitudePruneSpec

    def element_scores(self, model: torch.nn.Module, calibration: Calibration, batch_size: int
                       ) -> dict[str, torch.Tensor]:
        return {name: magnitude_element_scores(w, self.params.norm) for name, w in model.named_parameters()}


@IMPORTANCE_METHODS.register("activation")
class ActivationImportance(ImportanceMethod):
    """Minitron's scores from forward passes alone (activations.py)."""

    params: ActivationPruneSpec

    @property
    def calibration(self) -> tuple[int, int]:
        return self.params.calibration_samples, self.params.calibration_seq_len

    def unit_scores(self, model: torch.nn.Module, adapter: FamilyAdapter, graph: nx.DiGraph, calibration: Calibration,
                    batch_size: int) -> UnitScores:
        statistics = ActivationStatistics(model, adapter)
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for batch in in_batches(calibration(), batch_size):
                    model(input_ids=batch, use_cache=False)
        finally:
            statistics.remove()
            model.train(training)
        scores = statistics.unit_scores(adapter.shape_of(model.config))
        return {(data["kind"], data["layer"]): scores[(data["kind"], data["layer"])]
                for node, data in graph.nodes(data=True) if node[0] == "unit"}
