"""What every stage shares: one small lifecycle, and the run's context.

    stage = STAGES.get(stage_plan.stage)(stage_plan)      # the stage's own typed section of the plan
    stage.setup(context); stage.run(context); stage.finalize(context)
    stage.restore(context, checkpoint)                    # resume: what a finished stage handed on

A stage ends with a complete checkpoint (RunContext.save_complete) holding what later stages
need; a run resumed after it asks the stage to put that back (`restore`). A stage resumed from
one of its own unfinished checkpoints finds it in `context.resume` and restores itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from shearc.canonical import atomic_directory
from shearc.compiler.families import Shape, follow_kept_layers
from shearc.plan import Plan, StagePlan
from shearc.prepared import writable_data_cache
from shearc.registry import Registry

from ..data import DomainData, Preparer, load_domains
from ..dense_shards import ShardedWeights, load_shards, write_shards
from ..distributed import GatheredState, any_sharded, barrier, is_main, sharded_model, world_size
from ..memory import release_freed
from ..metrics import MetricsLog
from ..models import build_dense, dense_from_file, load_source_weights, meta_model
from ..precision import compute_dtype, source_dtype
from ..slicing import dense_tensors, kept_layers
from ..train.checkpoint import Checkpoint, Checkpoints, link_files
from ..train.compiled import CompileStats
from ..train.loop import Saving
from ..verify import VerifiedPlan


@dataclass
class RunContext:
    verified: VerifiedPlan
    run_dir: Path
    device: torch.device
    metrics: MetricsLog
    model: torch.nn.Module | None  # the source model, masked while pruning; None once released
    tokenizer: Any
    source_modified: bool = False  # pruning trained `model` (hard-concrete): it is no longer the source on disk
    finalize_tolerance: float | None = None  # replaces the finalize check's derived tolerance
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    dense_model: torch.nn.Module | None = None
    mixer_state: dict[str, Any] | None = None  # where pruning left the mixer, for recovery
    checks: dict[str, Any] = field(default_factory=dict)  # what finalize verified, for the model card
    report: dict[str, Any] | None = None  # the evaluate stage's results
    checkpoints: Checkpoints | None = None
    stage_index: int = 0  # of the stage now running
    resume: Checkpoint | None = None  # an unfinished checkpoint of the stage now running
    compiled: CompileStats | None = None  # what compiling the stage now running cost (runtime.compile), if it did
    say: Callable[[str], None] | None = None  # a line on the run's console

    def saving(self) -> Saving | None:
        if self.checkpoints is None:
            return None
        return Saving(self.checkpoints, self.stage_index, self.plan.runtime.checkpoint_interval, self.checks)

    def save_complete(self, stage: str, step: int, model: torch.nn.Module | None, trainer: dict[str, Any], *,
                      dense: bool = False) -> None:
        """The checkpoint that ends a stage, with what the later stages need; `model` None when the stage
        changed no weights (the newest checkpoint's, or the source's, still hold). `dense`: the stage's weights are
        the dense model in RUN_DIR/dense, which the checkpoint links. A model FSDP2 shards is written by every
        process, each its own shards. Every process calls this."""
        if self.checkpoints is None:
            return
        if model is not None and any_sharded(model):
            self.checkpoints.save_sharded(stage=stage, stage_index=self.stage_index, step=step, model=model,
                                          optimizer=None, trainer=trainer, checks=self.checks, complete=True)
            return
        self.checkpoints.save(stage=stage, stage_index=self.stage_index, step=step, complete=True,
                              model=None if dense else model, trainer=trainer, checks=self.checks,
                              dense=self.dense_dir if dense else None)

    @property
    def sharding(self) -> bool:
        """Whether the models are sharded over the processes (FSDP2 with more than one): each process then holds
        its part of every model after pruning, never a whole one but for the latency it measures on one device."""
        return self.plan.runtime.strategy == "fsdp2" and world_size() > 1

    def source_for_reading(self) -> torch.nn.Module:
        """The unmodified source: the copy in memory when there is one, else loaded from disk in the compute dtype."""
        if self.model is not None and not self.source_modified:
            return self.model
        dtype = compute_dtype(self.plan.precision, self.device)
        return load_source_weights(self.verified, self.device, dtype)

    def release_source(self) -> None:
        """No later stage needs the source in memory (evaluate reloads it): make room for the dense model."""
        if self.model is not None:
            self.model = None
            release_freed(collect=True)

    @property
    def plan(self) -> Plan:
        return self.verified.plan

    @property
    def seed(self) -> int:
        return self.plan.runtime.seed

    @property
    def source_held_as(self) -> torch.dtype:
        """The dtype the source is loaded in; dense models are built with their buffers in it (models.build_dense)."""
        return source_dtype(self.plan, self.device)

    @property
    def target_shape(self) -> Shape:
        """The plan's target shape (written once in the plan, under target.model_info)."""
        return Shape(**self.plan.target.model_info.shape.model_dump())

    def load_domains(self, seq_len: int, head: int | None = None) -> list[DomainData]:
        """The plan's domains, training windows `seq_len` long (data.py's shared cache: tokenized once for every
        length, stage and plan); `head`: tokens the stage reads at most of each stream (see load_domains)."""
        cache_dir = writable_data_cache()
        prepared = Preparer(self.tokenizer, self.plan.data.text_field, cache_dir)
        domains = load_domains(self.plan.data, base_dir=self.verified.plan_dir, tokenizer=self.tokenizer,
                               seq_len=seq_len, seed=self.seed, cache_dir=cache_dir, head=head, preparer=prepared)
        if prepared.stats.files:
            self.metrics.write("data", files=len(prepared.stats.files), tokens=prepared.stats.tokens,
                               seconds=prepared.stats.seconds, tokens_per_second=prepared.stats.tokens_per_second)
            if self.say is not None:
                self.say(prepared.stats.line())
        return domains

    def dense_config(self) -> dict[str, Any]:
        """The dense model's config: the plan's target config, with the per-layer settings (attention type per
        layer) of the layers pruning kept, known from the masks (RUN_DIR/masks.safetensors once finalize wrote
        them, on a resumed run)."""
        source = self.verified.source
        if self.target_shape.layers == source.shape.layers:
            return self.plan.target.config
        masks = self.masks or load_file(self.run_dir / "masks.safetensors")
        return follow_kept_layers(self.plan.target.config, source.config, kept_layers(masks, source.shape.layers))

    @property
    def dense_dir(self) -> Path:
        """Where finalize writes the dense model's shards (dense_shards.py)."""
        return self.run_dir / "dense"

    def write_dense(self, model: torch.nn.Module | Mapping[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
        """Fold `masks` into `model` (the source, or what pruning made of it; or its weights read from files) and
        slice it into RUN_DIR/dense/, one tensor at a time: the memory beyond `model` is one shard. Rank 0 writes;
        under FSDP2 every rank takes part in gathering each tensor; the others wait for the files."""
        source = self.verified.source
        state = GatheredState(model) if isinstance(model, torch.nn.Module) else model
        sharded = isinstance(model, torch.nn.Module) and any_sharded(model)
        self._write_dense_tensors(dense_tensors(state, source.adapter, masks, source.shape, tied=source.tied), sharded)

    def _write_dense_tensors(self, tensors: Iterator[tuple[str, torch.Tensor]], sharded: bool) -> None:
        if is_main():
            write_shards(tensors, self.dense_dir)
        elif sharded:  # every process takes part in gathering each tensor
            deque(tensors, maxlen=0)
        release_freed()  # malloc keeps what the shards took (150-200 MiB on SmolLM2-135M) otherwise
        barrier()

    def dense_weights(self) -> ShardedWeights:
        """The dense model's weights in RUN_DIR/dense/, read one tensor at a time (a tied output head: the
        embedding)."""
        return self.weights_in(self.dense_dir)

    def write_dense_model(self, model: torch.nn.Module) -> None:
        """A dense model's weights (recovery trained them) into RUN_DIR/dense/ in fp32, one tensor at a time, as
        write_dense writes the sliced ones (the tied head once); every process calls it."""
        self._write_dense_tensors(((key, tensor.float()) for key, tensor in GatheredState(model).items()
                                   if key != self.tied_head), any_sharded(model))

    @property
    def tied_head(self) -> str | None:
        """The output head's name when it is the embedding (files hold it once, under the embedding's name)."""
        source = self.verified.source
        return source.adapter.output_head if source.tied else None

    def source_weights(self, dtype: torch.dtype, computes_in: torch.dtype | None = None) -> ShardedWeights:
        """The source's weights as its directory holds them, read one tensor at a time, each in `dtype` (as a run
        holds them), then in `computes_in` if given (the finalize check's fp32)."""
        return self.weights_in(self.verified.model_dir, lambda _name, tensor: tensor.to(dtype).to(computes_in or dtype))

    def weights_in(self, directory: Path, transform: Callable[[str, torch.Tensor], torch.Tensor] | None = None
                   ) -> ShardedWeights:
        """A model of the source's family in `directory` (Hugging Face's safetensors files), one tensor at a time: a
        tied output head answered with the embedding."""
        head = self.tied_head
        return ShardedWeights(directory, {head: self.verified.source.adapter.embedding} if head else None,
                              transform=transform)

    def _sharded(self, config: dict[str, Any], weights: ShardedWeights, dtype: torch.dtype, training: bool
                 ) -> torch.nn.Module:
        return sharded_model(meta_model(config, self.source_held_as), weights,
                             self.verified.source.adapter.layer_prefix, dtype, self.device, training=training)

    def sharded_source(self, dtype: torch.dtype, *, training: bool = False) -> torch.nn.Module:
        """The unmodified source sharded over the processes (FSDP2), read from its directory in `dtype`: each
        process holds its part only (distributed.sharded_model); `training`: sharded to train."""
        return self._sharded(self.verified.source.config, self.source_weights(dtype), dtype, training)

    def sharded_dense(self, *, training: bool = False) -> torch.nn.Module:
        """The dense model in RUN_DIR/dense/ sharded over the processes (FSDP2), in fp32, as held; `training`:
        sharded to train."""
        return self._sharded(self.dense_config(), self.dense_weights(), torch.float32, training)

    def dense_for_reading(self) -> torch.nn.Module:
        """The dense model whole: the copy in memory when there is one, else loaded from RUN_DIR/dense/."""
        return self.dense_model if self.dense_model is not None else self.dense_from_shards()

    def dense_from_shards(self) -> torch.nn.Module:
        """The dense model in RUN_DIR/dense/, whole in memory, its buffers as finalize built them."""
        return build_dense(self.dense_config(), load_shards(self.dense_dir, self.device), self.verified.source.adapter,
                           self.source_held_as)

    def load_dense(self, weights: Path | None) -> torch.nn.Module | None:
        """Put RUN_DIR/dense/ back as a complete checkpoint left it: from its dense shards (`weights` a directory:
        linked again), from its safetensors file, or, None, sliced again from the source by the masks (pruning
        left the source's weights as they were; the source let go before the result is loaded). The dense model
        whole in memory, or None when the models are sharded (the later stages read RUN_DIR/dense/)."""
        if weights is not None and weights.is_dir():
            if weights.resolve() != self.dense_dir.resolve() and is_main():
                with atomic_directory(self.dense_dir) as staging:
                    link_files(weights, staging)
            barrier()
            return None if self.sharding else self.dense_from_shards()
        if weights is not None:
            model = dense_from_file(self.dense_config(), weights, self.verified.source.adapter, self.device,
                                    self.source_held_as)
            self.write_dense_model(model)
            if not self.sharding:
                return model
        else:
            masks = self.masks or load_file(self.run_dir / "masks.safetensors")
            model = load_source_weights(self.verified, self.device, self.source_held_as)
            self.write_dense(model, masks)
        del model
        release_freed(collect=True)
        return None if self.sharding else self.dense_from_shards()


class Stage(ABC):
    def __init__(self, stage_plan: StagePlan) -> None:
        self.stage_plan = stage_plan

    # setup and finalize are optional; restore's default serves every stage that leaves the dense model.
    def setup(self, context: RunContext) -> None:  # noqa: B027
        """Load what the stage needs (data, optimizer); no long work."""

    @abstractmethod
    def run(self, context: RunContext) -> None:
        """The stage's work."""

    def finalize(self, context: RunContext) -> None:  # noqa: B027
        """Hand results to the next stage; release what is no longer needed."""

    def restore(self, context: RunContext, checkpoint: Checkpoint) -> None:
        """Put back what this stage handed on, from the complete checkpoint it ended with. Here, for the
        stages from finalize on: the dense model, the mixer's state and any report."""
        handed = checkpoint.trainer_state()
        context.mixer_state = handed["mixer"]
        context.report = handed.get("report")
        context.dense_model = context.load_dense(checkpoint.weights)


STAGES: Registry[type[Stage]] = Registry("stage")
