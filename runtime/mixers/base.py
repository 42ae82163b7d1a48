"""The mixer interface the pruning and recovery stages drive.

    mixer.start_stage(StageInfo("prune", total_steps=3200, target_sparsity=0.8))
    weights = mixer.weights                 # sample the next batches by these
    mixer.update(Observation(step, losses, tokens, sparsity))   # every eval interval
    mixer.state_dict() / mixer.load_state_dict(state)           # checkpoints

Implementations register under the YAML names the compiler uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from shearc.plan import Plan
from shearc.registry import Registry

from ..metrics import MetricsLog

MIXER_IMPLEMENTATIONS: Registry[type[Mixer]] = Registry("mixer implementation")


@dataclass(frozen=True)
class StageInfo:
    name: str  # "prune" or "recover"
    total_steps: int
    target_sparsity: float | None = None  # set while pruning: the law then has a sparsity term


@dataclass(frozen=True)
class Observation:
    step: int  # optimizer steps done in this stage
    losses: np.ndarray  # per-domain loss: eval loss, or an EMA of training loss
    tokens: np.ndarray  # tokens drawn from each domain in this stage
    sparsity: float | None = None  # current expected sparsity while pruning


class Mixer(ABC):
    def __init__(self, names: list[str], weights: np.ndarray, references: np.ndarray | None, params: Any) -> None:
        """`params`: the plan's mixer section (shearc.sections.mixer), the spec model of this mixer."""
        self.names = list(names)
        self.initial = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.params = params
        self._weights = self.initial.copy()
        self.references = None if references is None else np.asarray(references, dtype=np.float64)
        self.stage: StageInfo | None = None

    @classmethod
    def from_plan(cls, plan: Plan) -> Mixer:
        domains = plan.data.domains
        references = [d.reference_loss for d in domains]
        return cls([d.name for d in domains], np.array([d.weight for d in domains]),
                   None if any(r is None for r in references) else np.array(references), plan.mixer)

    @property
    def uses_source_reference(self) -> bool:
        """Whether the source model's per-domain eval losses are to be measured as the reference losses."""
        return False

    @property
    def signal(self) -> str:
        """The per-domain losses the mixer reads: `eval`, or `train-ema` (an EMA of the training losses)."""
        return "eval"

    @property
    def weights(self) -> np.ndarray:
        return self._weights.copy()

    def adopt(self, weights: np.ndarray) -> None:
        """Take weights decided elsewhere (rank 0's, under torch.distributed)."""
        self._weights = np.asarray(weights, dtype=np.float64)

    def set_reference(self, losses: np.ndarray) -> None:
        """Reference losses measured on the source model (`reference: source`)."""
        self.references = np.asarray(losses, dtype=np.float64)

    def start_stage(self, stage: StageInfo, *, restart_weights: bool = False) -> None:
        """Begin a stage; weights carry over from the last stage unless restarted."""
        self.stage = stage
        if restart_weights:
            self._weights = self.initial.copy()

    @abstractmethod
    def update(self, observation: Observation) -> dict[str, Any]:
        """Move the weights; return what to log."""

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self._weights.tolist(),
                "references": None if self.references is None else self.references.tolist(),
                "stage": None if self.stage is None else self.stage.__dict__}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._weights = np.asarray(state["weights"], dtype=np.float64)
        self.references = None if state["references"] is None else np.asarray(state["references"])
        self.stage = None if state["stage"] is None else StageInfo(**state["stage"])

    def _require_references(self) -> np.ndarray:
        if self.references is None:
            raise RuntimeError(f"mixer {self.params.method} has no reference losses: the plan gives none, "
                               "and set_reference was not called with the source model's losses")
        return self.references


def update_and_log(mixer: Mixer, observation: Observation, metrics: MetricsLog,
                   eval_losses: np.ndarray | None = None) -> np.ndarray:
    """One mixer update, written to metrics.jsonl with the losses that drove it (`losses`) and the per-domain
    eval losses (`eval_losses`: the same, unless the mixer's signal is the training loss)."""
    record = mixer.update(observation)
    metrics.write("mixer", stage=mixer.stage.name if mixer.stage else None, step=observation.step,
                  method=mixer.params.method, domains=mixer.names, losses=observation.losses,
                  eval_losses=observation.losses if eval_losses is None else eval_losses,
                  tokens=observation.tokens, sparsity=observation.sparsity, weights=mixer.weights, **record)
    return mixer.weights


def log_stage_start(mixer: Mixer, stage: StageInfo, metrics: MetricsLog, *, restart_weights: bool) -> None:
    """Record how a stage started the mixer: with the `reference` and `mixer` records, metrics.jsonl then
    holds all a mixer's decisions depend on, so they can be replayed."""
    metrics.write("mixer_start", stage=stage.name, total_steps=stage.total_steps,
                  target_sparsity=stage.target_sparsity, restart_weights=restart_weights, weights=mixer.weights)


def build_mixer(plan: Plan) -> Mixer:
    return MIXER_IMPLEMENTATIONS.get(plan.mixer.method).from_plan(plan)
