"""Cost estimates made before any GPU time: FLOPs per token, tokens, steps and peak memory per stage.

Memory is per device, in bytes, at the spec's micro-batch and precision: the tensors alive at a
stage's peak, as torch counts them (torch.cuda.max_memory_allocated on a GPU; on a CPU the
profiler's allocations, see bench/bench_memory.py). What each stage holds:
- prune: hard-concrete trains the source (fp32 master weights, gradients and AdamW states, the
  masks' log-alphas and multipliers); taylor holds the source in the compute dtype, its gradients
  (summed into .grad, or into fp32 accumulators, plus the Fisher diagonal for second order) and one
  micro-batch's activations (one sample's for second order); magnitude the weights and a score per
  weight; activation the weights, one micro-batch's forward and a statistic per channel (under `masks`);
- finalize: the source and the dense result, plus the check's logits for one window (sharded over
  processes: the shards of what pruning changed, and what is read at a time);
- recover: fp32 master weights, gradients and AdamW states of what trains (sharded under FSDP2),
  frozen weights in the compute dtype, and the activations;
- evaluate: the source and the result, and one layer's activations with the logits (sharded: a share of one model
  at a time, or, on rank 0, each model that fits one device whole for its latency);
- export: the reloaded result in the export dtype (it is written from RUN_DIR/dense one shard at a time).
Activations are what a Llama block saves for backward, per token (6 hidden + q/k/v/attention
outputs + 4 intermediate), in the compute dtype, plus the fp32 logits and their gradient; with
activation checkpointing only each layer's input is kept, plus one layer's worth.

Also how often DRPruning's scaling-law fit can act in a stage (`drpruning_fits`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from shearc.sections import DistillRecoverySpec, DRPruningSpec, LoraRecoverySpec

from .families import Shape
from .precision import decide as decide_precision
from .shape import count_params, embedding_params
from .source import SourceModel
from .spec import Spec

GIB = 1024**3


@dataclass(frozen=True)
class Memory:
    weights: int
    grads: int
    optimizer: int
    activations: int
    masks: int

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer + self.activations + self.masks

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}

    def plus(self, other: Memory) -> Memory:
        return Memory(self.weights + other.weights, self.grads + other.grads, self.optimizer + other.optimizer,
                      self.activations + other.activations, self.masks + other.masks)


@dataclass(frozen=True)
class StageCost:
    tokens: int
    steps: int
    flops: int
    memory: Memory


def followed_by(cost: StageCost, then: StageCost | None) -> StageCost:
    """A stage's cost with a second piece of work done after it in the same stage: tokens and FLOPs add up,
    the memory peak is the larger of the two."""
    if then is None:
        return cost
    memory = max(cost.memory, then.memory, key=lambda m: m.total)
    return StageCost(cost.tokens + then.tokens, cost.steps, cost.flops + then.flops, memory)


def loaded_whole(cost: StageCost, held: int) -> StageCost:
    """A stage's cost with its start, when every process loads its model whole onto its device (`held` bytes:
    pruning's source for a scoring method, recovery's dense result for LoRA) before anything is sharded, so no
    process's peak is below the whole model's; `held` 0 when the model is read sharded from its files."""
    if cost.memory.total >= held:
        return cost
    return StageCost(cost.tokens, cost.steps, cost.flops, Memory(weights=held, grads=0, optimizer=0, activations=0,
                                                                  masks=0))


@dataclass(frozen=True)
class Costing:
    """What a method's `cost` (shearc/sections) asks about the model and the run, in one place."""

    source: SourceModel
    target_shape: Shape
    spec: Spec
    pruned_kinds: frozenset[str]

    @property
    def source_shape(self) -> Shape:
        return self.source.shape

    @property
    def source_params(self) -> int:
        return count_params(self.source, self.source.shape)

    @property
    def target_params(self) -> int:
        return count_params(self.source, self.target_shape)

    def stage(self, tokens: int, steps: int, flops: int, memory: Memory) -> StageCost:
        return StageCost(tokens, steps, flops, memory)

    def forward_flops(self, shape: Shape, seq_len: int) -> int:
        return forward_flops_per_token(self.source, shape, seq_len)

    def training(self, shape: Shape, seq_len: int, *, trained: int, frozen: int, masked: bool, masks: int = 0,
                 lora: LoraRecoverySpec | DistillRecoverySpec | None = None) -> Memory:
        return training_memory(self.source, shape, self.spec, seq_len, trained=trained, frozen=frozen, masked=masked,
                               masks=masks, lora=lora)

    def taylor(self, seq_len: int, *, second_order: bool) -> Memory:
        return taylor_memory(self.source, self.spec, seq_len, second_order=second_order)

    def magnitude(self) -> Memory:
        return magnitude_memory(self.source, self.spec)

    def forward_only(self, seq_len: int) -> Memory:
        return forward_only_memory(self.source, self.spec, seq_len)

    def reconstruction(self, seq_len: int, tokens: int) -> StageCost:
        widths = refit_widths(self.source.shape, self.pruned_kinds)
        forwards = 3 * self.forward_flops(self.source_shape, seq_len) * tokens
        grams = self.source_shape.layers * sum(2 * tokens * width**2 + width**3 for width in widths)
        return self.stage(tokens, 0, forwards + grams, reconstruction_memory(self.source, self.spec, seq_len, tokens,
                                                                            widths))

    def dense_training(self, stage: Any) -> StageCost:
        """A recovery section's training of the dense model: every weight (fp32 master weights, gradients, AdamW
        states; forward and backward), or, when its base is frozen, LoRA adapters in fp32 beside it (the frozen
        weights take no weight gradients)."""
        forward = self.forward_flops(self.target_shape, stage.seq_len)
        if stage.frozen_base:
            adapters = self.lora_params(stage.rank, stage.target_modules)
            memory = self.training(self.target_shape, stage.seq_len, trained=adapters, frozen=self.target_params,
                                   masked=False, lora=stage)
            return self.stage(stage.tokens, stage.steps, 2 * forward * stage.tokens, memory)
        memory = self.training(self.target_shape, stage.seq_len, trained=self.target_params, frozen=0, masked=False)
        return self.stage(stage.tokens, stage.steps, 3 * forward * stage.tokens, memory)

    def teacher(self, seq_len: int) -> Memory:
        """A frozen copy of the source beside a trained model: its weights in the compute dtype (sharded under FSDP2),
        and per micro-batch its logits (in fp32) and the softened distributions taken from them."""
        tokens = self.spec.schedule.micro_batch * seq_len
        return Memory(weights=self.source_params * compute_bytes(self.spec) // fsdp_shards(self.spec), grads=0,
                      optimizer=0,
                      activations=tokens * self.source.vocab * 4 * 2, masks=0)

    def mask_units(self) -> int:
        return mask_units(self.source, set(self.pruned_kinds))

    def lora_params(self, rank: int, modules: list[str]) -> int:
        return lora_params(self.source, self.target_shape, rank, modules)


def recovery_loads(spec: Spec, costing: Costing) -> int:
    """Bytes of the dense model recovery loads whole onto each device before sharding it: in fp32, unless every
    weight trains under FSDP2 on several processes (each reads its shards from RUN_DIR/dense/; runtime/stages/
    recover.py). Adapters (LoRA) wrap the whole model first."""
    if sharding(spec) and not spec.recovery.frozen_base:
        return 0
    return costing.target_params * RESULT_BYTES


def compute_bytes(spec: Spec) -> int:
    """The compute dtype's size on the device the estimates are for (CUDA unless the spec says cpu)."""
    chosen = decide_precision(spec.runtime.precision).on("cpu" if spec.runtime.device == "cpu" else "cuda")
    return 2 if chosen == "bf16" else 4


def fsdp_shards(spec: Spec) -> int:
    """How many ways FSDP2 splits each weight (1 without it)."""
    return spec.runtime.devices if spec.runtime.strategy == "fsdp2" else 1


# The dense result as the run holds it: fp32 from finalize on (runtime/slicing.py finalize_state; a LoRA recovery
# merges its adapters into a base held in the compute dtype, which this overcounts)
RESULT_BYTES = 4


def source_bytes(spec: Spec) -> int:
    """The source as the run holds it: fp32 when pruning trains it or takes its gradients, else the compute dtype."""
    return 4 if spec.prune.holds_source_in_fp32 else compute_bytes(spec)


def matmul_params(source: SourceModel, shape: Shape) -> int:
    """Parameters that take part in a matrix multiply per token (not the embedding lookup or norms)."""
    norms = shape.hidden * (2 * shape.layers + 1)
    lookup = source.vocab * shape.hidden if not source.tied else 0
    return count_params(source, shape) - lookup - norms


def forward_flops_per_token(source: SourceModel, shape: Shape, seq_len: int) -> int:
    """2 per multiply-add of the weights, plus causal attention scores and values (Kaplan et al.)."""
    attention = 2 * shape.layers * seq_len * shape.heads * shape.head_dim
    return 2 * matmul_params(source, shape) + attention


def activation_bytes_per_token(source: SourceModel, shape: Shape, spec: Spec, *, masked: bool,
                               lora: LoraRecoverySpec | DistillRecoverySpec | None = None) -> int:
    """What one token costs in saved activations across the whole model."""
    attn, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    per_layer = 6 * shape.hidden + 2 * attn + 2 * kv + 4 * shape.intermediate
    if masked:  # the mask products are saved too: residual and norm outputs, heads, intermediate
        per_layer += 4 * shape.hidden + attn + shape.intermediate
    size = compute_bytes(spec)
    per_layer *= size
    if lora is not None:  # each adapter saves its dropped-out input (and the dropout mask) and its rank-r output
        inputs = sum(source.adapter.lora_in_out(shape, module)[0] for module in lora.target_modules)
        per_layer += inputs * (size + (lora.dropout > 0)) + len(lora.target_modules) * lora.rank * size
    if spec.schedule.activation_checkpointing:
        layers = shape.layers * shape.hidden * size + per_layer
    else:
        layers = shape.layers * per_layer
    logits = source.vocab * (size + 4 + 4)  # logits, their fp32 upcast for the loss, and its gradient
    return layers + logits


def training_memory(source: SourceModel, shape: Shape, spec: Spec, seq_len: int, *, trained: int, frozen: int,
                    masked: bool, masks: int = 0, lora: LoraRecoverySpec | DistillRecoverySpec | None = None
                    ) -> Memory:
    shards = fsdp_shards(spec)
    tokens = spec.schedule.micro_batch * seq_len
    return Memory(
        weights=(trained * 4 + frozen * compute_bytes(spec)) // shards,
        grads=trained * 4 // shards,
        optimizer=trained * 8 // shards,
        activations=tokens * activation_bytes_per_token(source, shape, spec, masked=masked, lora=lora),
        masks=masks * 4 * 3,  # log-alpha + two AdamW moments
    )


def inference_memory(source: SourceModel, spec: Spec, seq_len: int, weights: int, batch: int | None = None) -> Memory:
    """`weights` bytes of models, and one forward's activations (of `batch` sequences, default a micro-batch): one
    layer's at a time, and the logits."""
    shape = source.shape
    tokens = (batch or spec.schedule.micro_batch) * seq_len
    size = compute_bytes(spec)
    per_layer = 2 * shape.hidden + shape.heads * shape.head_dim + 2 * shape.intermediate
    return Memory(weights=weights, grads=0, optimizer=0,
                  activations=tokens * (per_layer * size + source.vocab * (size + 4)), masks=0)


DENSE_SHARD_BYTES = 64 * 2**20  # runtime/dense_shards.py SHARD_BYTES: what finalize writes at a time


def largest_tensor(source: SourceModel, shape: Shape) -> int:
    """Elements of the largest tensor of the architecture at `shape`: the embedding, or a layer's widest
    projection."""
    projection = max(shape.intermediate, shape.heads * shape.head_dim) * shape.hidden
    return max(source.vocab * shape.hidden, projection)


def largest_dense_tensor(source: SourceModel, target: Shape) -> int:
    """Bytes of the dense model's largest tensor (fp32)."""
    return largest_tensor(source, target) * RESULT_BYTES


def dense_written_at_a_time(source: SourceModel, target: Shape) -> int:
    """What writing RUN_DIR/dense/ (or masked/) holds at a time: a shard being filled (at most the whole model) or one
    larger tensor, and safetensors' copy of its bytes."""
    dense = count_params(source, target) * RESULT_BYTES
    return 2 * max(min(DENSE_SHARD_BYTES, dense), largest_dense_tensor(source, target))


def sharding(spec: Spec) -> bool:
    """Whether the stages after pruning hold their models sharded over the processes (runtime/stages/base.py
    RunContext.sharding: FSDP2 on more than one)."""
    return fsdp_shards(spec) > 1


def finalize_memory(source: SourceModel, target: Shape, spec: Spec, check_tokens: int) -> Memory:
    """The source, and beside it only what finalize handles at a time: a shard being written and safetensors' copy
    of its bytes, or one module's weights as the check streams the dense model from disk (the largest tensor
    either way, for a model worth pruning); once the source is let go, the dense result whole. Sharded over
    processes: each holds its shards of the weights pruning changed (none when it left the source's: they are
    read from its files), and the check streams the masked model from files too; the dense result is not loaded.
    The check's logits for one window in fp32 (masked, sliced, their difference, and the forward's own)."""
    source_held = count_params(source, source.shape) * source_bytes(spec)
    dense = count_params(source, target) * RESULT_BYTES
    at_a_time = dense_written_at_a_time(source, target)
    if sharding(spec):
        weights = (source_held // fsdp_shards(spec) if spec.prune.changes_weights else 0) + at_a_time
    else:
        weights = max(source_held + at_a_time, dense)
    return Memory(weights=weights, grads=0, optimizer=0, activations=check_tokens * source.vocab * 4 * 4, masks=0)


def evaluate_models(source: SourceModel, target: Shape, spec: Spec) -> dict[str, int]:
    """Bytes of the models evaluate compares, whole, as it holds them: the source in the compute dtype, the result
    in fp32."""
    return {"source": count_params(source, source.shape) * compute_bytes(spec),
            "result": count_params(source, target) * RESULT_BYTES}


def latency_models(source: SourceModel, target: Shape, spec: Spec, seq_len: int) -> list[str]:
    """The models whose forward latency evaluate measures. Latency is measured on one device, as the model would be
    served, so only for a model that fits one: its weights as held and one latency forward within
    runtime.device_memory_gib (a 70B source in bf16 fits no 80 GB device; its latency is reported as not measured)."""
    budget = spec.runtime.device_memory_gib * GIB
    return [side for side, held in evaluate_models(source, target, spec).items()
            if inference_memory(source, spec, seq_len, held, batch=spec.eval.latency_batch).total <= budget]


def evaluate_weights(source: SourceModel, target: Shape, spec: Spec, latency_of: list[str],
                     downstream: bool = False) -> int:
    """The models evaluate holds at once: both, whole (one process, or lm-eval's `downstream` tasks, which score
    whole models in every process). Sharded over processes: one model at a time, each process its part of the
    decoder blocks and the root's weights whole, for the losses; then rank 0 alone holds each model of
    `latency_of` whole in turn for its latency."""
    models = evaluate_models(source, target, spec)
    if not sharding(spec) or downstream:
        return sum(models.values())
    shares = []
    for side, shape in (("source", source.shape), ("result", target)):
        root = embedding_params(source, shape) * models[side] // count_params(source, shape)
        shares.append((models[side] - root) // fsdp_shards(spec) + root)
    return max(shares + [models[side] for side in latency_of])


EXPORT_COMPARE_BLOCK = 16 * 2**20  # runtime/dense_shards.py row_blocks: the fp32 rows the export check reads at a time


def export_bytes(spec: Spec) -> int:
    return 4 if spec.export.dtype == "float32" else 2


def export_memory(source: SourceModel, target: Shape, spec: Spec) -> Memory:
    """The result, written from RUN_DIR/dense one tensor at a time in the export dtype, then reloaded whole for the
    check: the reloaded model is the peak, on rank 0 alone."""
    return Memory(weights=count_params(source, target) * export_bytes(spec), grads=0, optimizer=0, activations=0,
                  masks=0)


def host_memory(stage: str, source: SourceModel, target: Shape, spec: Spec, device_peak: int) -> int:
    """Peak host memory of the busiest process in `stage`, beyond its own baseline (the interpreter, torch, a CUDA
    context). On a CPU the models are in host memory: the device estimate itself. On GPUs the models live on the
    devices and host memory holds what passes through it at a time, as the runtime moves it:
    - every model is read from safetensors files one tensor at a time (the source by from_pretrained onto the
      device, the sharded reads, the latency models, RUN_DIR/dense/), cast on the way: two of the largest;
    - finalize and recovery's end write RUN_DIR/dense/ (and masked/) a shard at a time on rank 0 (a gathered tensor
      copied to the host, and the shard's bytes), and the finalize check streams both models one decoder layer at
      a time through host memory (accelerate's offload hooks);
    - a training stage's checkpoint on one process or under DDP is rank 0's `model.safetensors`, which safetensors
      serialises whole in host memory first (the fp32 weights trained); under FSDP2, torch.distributed.checkpoint
      writes each process's shards one tensor at a time;
    - export's reload check loads the exported model whole on rank 0's host, in the export dtype.
    Memory-mapped files (the source's, the data's) are the node's page cache, shared by its processes and given
    back under pressure: not counted."""
    if spec.runtime.device == "cpu":
        return device_peak
    read_source = 2 * largest_tensor(source, source.shape) * 4  # a tensor as read, and its cast (fp32 at most)
    dense = count_params(source, target) * RESULT_BYTES
    write_dense = dense_written_at_a_time(source, target)
    checkpoint_whole = fsdp_shards(spec) == 1
    if stage == "prune":
        trained = count_params(source, source.shape) * 4 if spec.prune.changes_weights and checkpoint_whole else 0
        return max(read_source, trained)
    if stage == "finalize":
        streamed = 2 * (non_embedding(source, source.shape) // source.shape.layers
                        + non_embedding(source, target) // target.layers) * 4  # a decoder layer of each
        return max(read_source, write_dense, streamed)
    if stage == "recover":
        return max(read_source, write_dense, dense if checkpoint_whole else 0)
    if stage == "evaluate":
        return read_source
    if stage == "export":  # a dense tensor read and cast as it is written; then the reload, a block of rows beside
        exported = export_bytes(spec)
        return max(largest_tensor(source, target) * (RESULT_BYTES + exported),
                   count_params(source, target) * exported + EXPORT_COMPARE_BLOCK * (RESULT_BYTES + exported) // 4)
    raise ValueError(f"no host memory model for stage {stage!r}")


def taylor_memory(source: SourceModel, spec: Spec, seq_len: int, *, second_order: bool) -> Memory:
    """The source in its dtype, its .grad, the fp32 sums (none when .grad is fp32 and first order: it sums in
    place; the Fisher diagonal for second order) and the activations of a micro-batch (of one sample for
    second order, whose per-sample gradients go one at a time)."""
    params, size = count_params(source, source.shape), source_bytes(spec)
    accumulators = (second_order or size != 4) + second_order
    batch = 1 if second_order else spec.schedule.micro_batch
    return Memory(weights=params * size, grads=params * size, optimizer=params * 4 * accumulators,
                  activations=batch * seq_len * activation_bytes_per_token(source, source.shape, spec, masked=False),
                  masks=0)


def magnitude_memory(source: SourceModel, spec: Spec) -> Memory:
    """The source and an fp32 score per weight."""
    params = count_params(source, source.shape)
    return Memory(weights=params * source_bytes(spec), grads=0, optimizer=params * 4, activations=0, masks=0)


def forward_only_memory(source: SourceModel, spec: Spec, seq_len: int) -> Memory:
    """Scoring by activations: the source as held, one micro-batch's forward (one layer's activations at a time and
    the logits) and the fp32 statistics: a sum per channel of every hooked tensor, a score per layer."""
    shape = source.shape
    memory = inference_memory(source, spec, seq_len, count_params(source, shape) * source_bytes(spec))
    statistics = shape.layers * (shape.heads * shape.head_dim + shape.intermediate + 2 * shape.hidden + 1) * 4
    return Memory(memory.weights, 0, 0, memory.activations, statistics)


def refit_widths(shape: Shape, pruned_kinds: frozenset[str]) -> list[int]:
    """The input widths of the projections reconstruction refits in each layer: the attention output projection's
    when heads are pruned, the down projection's when intermediate channels are."""
    widths = [shape.heads * shape.head_dim] if pruned_kinds & {"kv_group", "query_head"} else []
    return widths + ([shape.intermediate] if "intermediate" in pruned_kinds else [])


def reconstruction_memory(source: SourceModel, spec: Spec, seq_len: int, tokens: int, widths: list[int]) -> Memory:
    """The source as held and one micro-batch's forward; every calibration token's hidden state in the source's dtype;
    the widest Gram matrix and its solve (the kept block and right-hand side) in float64."""
    memory = forward_only_memory(source, spec, seq_len)
    states = tokens * source.shape.hidden * source_bytes(spec)
    widest = max(widths, default=0)
    solve = (2 * widest * widest + widest * source.shape.hidden) * 8
    return Memory(memory.weights, 0, 0, memory.activations + states, solve)


def mask_units(source: SourceModel, pruned_kinds: set[str]) -> int:
    """Number of hard-concrete log-alphas for the unit kinds being pruned (+2 multipliers per kind)."""
    shape = source.shape
    per_kind = {
        "layer": shape.layers,
        "hidden": shape.hidden,
        "kv_group": shape.layers * shape.kv_heads,
        "query_head": shape.layers * shape.heads,
        "intermediate": shape.layers * shape.intermediate,
    }
    return sum(per_kind[kind] + 2 for kind in pruned_kinds)


def lora_params(source: SourceModel, shape: Shape, rank: int, modules: list[str]) -> int:
    """Adapter parameters: rank x (inputs + outputs) per adapted projection and layer."""
    return shape.layers * sum(rank * sum(source.adapter.lora_in_out(shape, m)) for m in modules)


def non_embedding(source: SourceModel, shape: Shape) -> int:
    return count_params(source, shape) - embedding_params(source, shape)


def drpruning_fits(steps: int, eval_interval: int, mixer: DRPruningSpec) -> int:
    """How many of a stage's mixer updates can refit DRPruning's scaling laws: the runtime records an eval once
    fit_history_after of the stage is done (keeping fit_max_points), and fits once it holds fit_min_points and
    fit_min_progress is done. An upper bound: a domain never drawn has no points. Counted without listing the
    evals, which a spec may ask for by the billion."""
    if mixer.fit_min_points > mixer.fit_max_points:
        return 0
    multiples = steps // eval_interval
    evals = multiples + (steps % eval_interval != 0)  # every eval_interval steps, and at the end

    def first_at(fraction: float) -> int:
        """1-based index of the first eval at or past `fraction` of the stage (the last eval, at `steps`, is)."""
        k = min(max(1, math.floor(fraction * steps / eval_interval)), multiples + 1)
        while k > 1 and (k - 1) * eval_interval / steps >= fraction:
            k -= 1
        while k <= multiples and k * eval_interval / steps < fraction:
            k += 1
        return k

    # recorded grows by one per eval from the first past fit_history_after, so it holds fit_min_points
    # fit_min_points - 1 evals later
    first_fit = max(first_at(mixer.fit_min_progress), first_at(mixer.fit_history_after) + mixer.fit_min_points - 1)
    return max(0, evals - first_fit + 1)

