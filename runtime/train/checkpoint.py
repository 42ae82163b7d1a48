"""Checkpoints of a run: written atomically, tagged with the plan's hash, the last N kept.

    RUN_DIR/checkpoints/01-prune-00000500/
        meta.json           plan hash, stage, step, complete, checks, where the weights are
        model.safetensors   the model being trained (safetensors' save_model: tied weights once)
        trainer.pt          optimizer, masks and multipliers, mixer, data position, RNG states
        sharded/            instead, under FSDP2: the model's (and inside a stage the optimizer's)
                            shards, each rank's own (torch.distributed.checkpoint); trainer.pt
                            then holds the rest
        dense/              instead, from finalize on: the dense model's shards, hard-linked from
                            RUN_DIR/dense (dense_shards.py), not written again

A checkpoint marked complete ends its stage and carries what later stages need (the
masks, the mixer's proportions, the evaluation). A stage that changed no weights writes
none: its checkpoint points at the newest one that holds them (kept while pointed at), or
at none when the source's own weights still hold (score-based pruning). Running the plan
again resumes from the newest checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from shearc.canonical import atomic_directory
from shearc.errors import Problem, UserError

from ..dense_shards import weight_map
from ..distributed import barrier, is_main, load_sharded_model, save_sharded
from ..integrity import safetensors_problem, torch_save_problem


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    meta: dict[str, Any]

    @property
    def stage_index(self) -> int:
        return self.meta["stage_index"]

    @property
    def step(self) -> int:
        return self.meta["step"]

    @property
    def complete(self) -> bool:
        return self.meta["complete"]

    @property
    def sharded(self) -> Path | None:
        """The torch.distributed.checkpoint directory of a sharded checkpoint (model and optimizer); else None."""
        return self.path / "sharded" if self.meta.get("sharded") else None

    @property
    def weights(self) -> Path | None:
        """Where this checkpoint's model is: a safetensors file, or a directory of the dense model's shards
        (dense_shards.py) linked from RUN_DIR/dense; None when the source's weights hold, or when they are sharded
        (`sharded`)."""
        holder = self.meta.get("weights", self.path.name)
        if holder is None or self.sharded:
            return None
        dense = self.path.parent / holder / "dense"
        return dense if dense.is_dir() else self.path.parent / holder / "model.safetensors"

    def load_model(self, model: torch.nn.Module) -> None:
        """The checkpoint's weights into `model` (sharded ones on any number of ranks, or in one process)."""
        if self.sharded is not None:
            load_sharded_model(self.sharded, model)
            return
        if self.weights is None:
            raise RuntimeError(f"checkpoint {self.path} holds no weights (the source's hold)")
        missing, unexpected = load_model(model, self.weights, strict=True)
        if missing or unexpected:  # strict=True raises first; kept as a guard
            raise RuntimeError(f"checkpoint {self.path} does not fit the model: {missing} {unexpected}")

    def trainer_state(self) -> dict[str, Any]:
        return torch.load(self.path / "trainer.pt", weights_only=True)


class Checkpoints:
    def __init__(self, directory: Path, plan_sha256: str, keep: int) -> None:
        self.directory, self.plan_sha256, self.keep = directory, plan_sha256, keep

    def all(self) -> list[Checkpoint]:
        found = []
        for meta_path in sorted(self.directory.glob("[!.]*/meta.json")):  # .name.* are unfinished writes
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = None
            if not isinstance(meta, dict) or not {"plan_sha256", "stage_index", "step"} <= set(meta):
                meta = {"plan_sha256": None, "stage_index": -1, "step": -1, "damaged": "its meta.json is unreadable"}
            found.append(Checkpoint(meta_path.parent, meta))
        return sorted(found, key=lambda c: (c.stage_index, c.step))

    def latest(self, warn: Callable[[str], None] | None = None) -> Checkpoint | None:
        """The newest whole checkpoint: a damaged one (a file cut short or unreadable) is passed over for the one
        before, with `warn` told which and why; one of another plan is refused rather than used."""
        checkpoints = self.all()
        foreign = [c for c in checkpoints if c.meta["plan_sha256"] not in (self.plan_sha256, None)]
        if foreign:
            raise UserError([Problem(f"{c.path} was written by another plan (sha256 {c.meta['plan_sha256'][:12]}); "
                                     "resume with that plan, or choose another run directory", "runtime.output_dir")
                             for c in foreign[:3]], title="checkpoint of another plan")
        unreadable = [c for c in checkpoints if "damaged" in c.meta]  # where they stood in the run is unknown
        for checkpoint in [*unreadable, *reversed([c for c in checkpoints if "damaged" not in c.meta])]:
            damage = damaged(checkpoint)
            if damage is None:
                return checkpoint
            if warn is not None:
                warn(f"warning: skipping the damaged checkpoint {checkpoint.path.name} ({damage}); resuming from "
                     "the newest whole one before it")
        return None

    def save(self, *, stage: str, stage_index: int, step: int, complete: bool, model: torch.nn.Module | None,
             trainer: dict[str, Any], checks: dict[str, Any] | None = None, dense: Path | None = None
             ) -> Checkpoint | None:
        """Rank 0 writes; the others return None. `model` None: the stage changed no weights, so the
        newest checkpoint's (or the source's) are this one's; `dense` instead: the dense model's shards in that
        directory (RUN_DIR/dense), linked into the checkpoint rather than written again."""
        if not is_main():
            return None
        require_plain(trainer)
        final = self._path(stage, stage_index, step)
        previous = self.all()
        if dense is not None:
            holder = final.name
        elif model is None:
            if previous and previous[-1].sharded:  # only a stage's own checkpoints are sharded; its end is not
                raise AssertionError(f"{previous[-1].path} is sharded: a checkpoint cannot take its weights")
            holder = previous[-1].weights.parent.name if previous and previous[-1].weights else None
        else:
            holder = final.name
        meta = self._meta(stage, stage_index, step, complete=complete, checks=checks or {}, weights=holder)
        with atomic_directory(final) as staging:
            if dense is not None:
                link_files(dense, staging / "dense")
            elif model is not None:
                save_model(model, str(staging / "model.safetensors"))
            _write_trainer_and_meta(staging, trainer, meta)
        self._rotate()
        return Checkpoint(final, meta)

    def save_sharded(self, *, stage: str, stage_index: int, step: int, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer | None, trainer: dict[str, Any], checks: dict[str, Any],
                     complete: bool = False) -> None:
        """Under FSDP2, on every rank: each writes its shards of the model and the optimizer (inside a stage;
        None at a stage's end, `complete`) into a hidden staging directory, rank 0 adds the rest of `trainer`
        and the meta, then renames it into place; nothing is gathered whole, and a crash leaves no half-written
        checkpoint."""
        final = self._path(stage, stage_index, step)
        staging = self.directory / f".{final.name}.sharded"  # one name every rank knows
        if is_main():
            require_plain(trainer)
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        barrier()
        save_sharded(staging / "sharded", model, optimizer)
        if is_main():
            meta = self._meta(stage, stage_index, step, complete=complete, checks=checks, weights=final.name)
            _write_trainer_and_meta(staging, trainer, {**meta, "sharded": True})
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            self._rotate()
        barrier()

    def _path(self, stage: str, stage_index: int, step: int) -> Path:
        return self.directory / f"{stage_index:02d}-{stage}-{step:08d}"

    def _meta(self, stage: str, stage_index: int, step: int, *, complete: bool, checks: dict[str, Any],
              weights: str | None) -> dict[str, Any]:
        """meta.json: whose checkpoint (the plan's hash), where in the run, and which checkpoint holds its weights."""
        return {"plan_sha256": self.plan_sha256, "stage": stage, "stage_index": stage_index, "step": step,
                "complete": complete, "checks": checks, "weights": weights}

    def _rotate(self) -> None:
        """Keep the newest `keep`, and any older one whose weights they point at."""
        checkpoints = self.all()
        kept = checkpoints[-self.keep:]
        needed = {c.weights.parent.name for c in kept if c.weights is not None}
        for old in checkpoints[: -self.keep]:
            if old.path.name not in needed:
                shutil.rmtree(old.path, ignore_errors=True)


def _write_trainer_and_meta(staging: Path, trainer: dict[str, Any], meta: dict[str, Any]) -> None:
    torch.save(trainer, staging / "trainer.pt")
    (staging / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def damaged(checkpoint: Checkpoint) -> str | None:
    """What makes a checkpoint unusable (a file missing, cut short or unreadable), or None."""
    if "damaged" in checkpoint.meta:
        return checkpoint.meta["damaged"]
    problem = torch_save_problem(checkpoint.path / "trainer.pt")
    if problem is None and checkpoint.weights is not None:
        problem = weights_problem(checkpoint.weights)
    if problem is None and checkpoint.sharded is not None and not (checkpoint.sharded / ".metadata").is_file():
        problem = "its sharded weights have no .metadata"
    return problem


def weights_problem(weights: Path) -> str | None:
    """What is wrong with a checkpoint's weights (a safetensors file, or a directory of shards), or None."""
    if weights.is_dir():
        try:
            files = sorted(set(weight_map(weights).values()))
        except (OSError, ValueError, KeyError):
            return f"its dense shards ({weights}) have no readable index"
        return next((problem for problem in (safetensors_problem(weights / name) if (weights / name).is_file()
                                              else f"its weights ({weights / name}) are gone" for name in files)
                     if problem is not None), None)
    return safetensors_problem(weights) if weights.is_file() else f"its weights ({weights}) are gone"


def link_files(source: Path, destination: Path) -> None:
    """Every file of `source` into the directory `destination` (made if missing), hard-linked (no bytes written
    again; copied where the file system has no hard links)."""
    destination.mkdir(exist_ok=True)
    for path in sorted(source.iterdir()):
        try:
            os.link(path, destination / path.name)
        except OSError:
            shutil.copy2(path, destination / path.name)


def require_plain(state: Any) -> None:
    """Refuse, before anything is written, trainer state that `torch.load(weights_only=True)` would
    not read back: only tensors and plain Python values, so a resume never depends on which numpy
    (or other library) version wrote the checkpoint."""
    found = _not_plain(state, "trainer")
    if found:
        raise TypeError("checkpoint state must hold only tensors and plain Python values (int, float, bool, str, "
                        "None, and lists, tuples and dicts of them); found " + "; ".join(found[:5]))


_PLAIN_SCALARS = (bool, int, float, str, type(None))  # exactly these types: numpy.float64 is a float subclass


def _not_plain(value: Any, where: str) -> list[str]:
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN_SCALARS:
        return []
    if type(value) in (list, tuple):
        return [found for i, item in enumerate(value) for found in _not_plain(item, f"{where}[{i}]")]
    if type(value) in (dict, OrderedDict):
        bad_keys = [f"{where} key {key!r} is {type(key).__module__}.{type(key).__qualname__}"
                    for key in value if type(key) not in (str, int)]
        return bad_keys + [found for key, item in value.items() for found in _not_plain(item, f"{where}[{key!r}]")]
    return [f"{where} is {type(value).__module__}.{type(value).__qualname__}"]


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
