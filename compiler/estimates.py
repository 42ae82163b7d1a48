"""Cost estimates made before any GPU time: FLOPs per token, tokens, steps and peak memory per stage.

Memory is per device, in bytes, at the spec's micro-batch and precision:
- weights, gradients and AdamW states: fp32 master weights (4 + 4 + 8 bytes per trained
  parameter), sharded over devices under FSDP2; frozen weights in the compute dtype;
- activations: the tensors a Llama block saves for backward, per token
  (6 hidden + q/k/v/attention outputs + 4 intermediate), in the compute dtype, plus the
  fp32 logits and their gradient; with activation checkpointing only each layer's input
  is kept, plus one layer's worth;
- masks: hard-concrete log-alphas with their AdamW states, and the Lagrange multipliers.

Also how often DRPruning's scaling-law fit can act in a stage (`drpruning_fits`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .adapters import Shape
from .shape import count_params, embedding_params
from .source import SourceModel
from .spec import DRPruningMixer, Spec

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


def compute_bytes(spec: Spec) -> int:
    """bf16 on CUDA (auto or bf16), fp32 otherwise."""
    precision = spec.runtime.precision
    on_gpu = spec.runtime.device != "cpu"
    return 2 if precision == "bf16" or (precision == "auto" and on_gpu) else 4


def matmul_params(source: SourceModel, shape: Shape) -> int:
    """Parameters that take part in a matrix multiply per token (not the embedding lookup or norms)."""
    norms = shape.hidden * (2 * shape.layers + 1)
    lookup = source.vocab * shape.hidden if not source.tied else 0
    return count_params(source, shape) - lookup - norms


def forward_flops_per_token(source: SourceModel, shape: Shape, seq_len: int) -> int:
    """2 per multiply-add of the weights, plus causal attention scores and values (Kaplan et al.)."""
    attention = 2 * shape.layers * seq_len * shape.heads * shape.head_dim
    return 2 * matmul_params(source, shape) + attention


def activation_bytes_per_token(source: SourceModel, shape: Shape, spec: Spec, *, masked: bool) -> int:
    """What one token costs in saved activations across the whole model."""
    attn, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    per_layer = 6 * shape.hidden + 2 * attn + 2 * kv + 4 * shape.intermediate
    if masked:  # the mask products are saved too: residual and norm outputs, heads, intermediate
        per_layer += 4 * shape.hidden + attn + shape.intermediate
    size = compute_bytes(spec)
    if spec.schedule.activation_checkpointing:
        layers = shape.layers * shape.hidden * size + per_layer * size
    else:
        layers = shape.layers * per_layer * size
    logits = source.vocab * (size + 4 + 4)  # logits, their fp32 upcast for the loss, and its gradient
    return layers + logits


def training_memory(source: SourceModel, shape: Shape, spec: Spec, seq_len: int, *, trained: int,
                    frozen: int, masked: bool, masks: int = 0) -> Memory:
    shards = spec.runtime.devices if spec.runtime.strategy == "fsdp2" else 1
    tokens = spec.schedule.micro_batch * seq_len
    return Memory(
        weights=(trained * 4 + frozen * compute_bytes(spec)) // shards,
        grads=trained * 4 // shards,
        optimizer=trained * 8 // shards,
        activations=tokens * activation_bytes_per_token(source, shape, spec, masked=masked),
        masks=masks * 4 * 3,  # log-alpha + two AdamW moments
    )


def inference_memory(source: SourceModel, shape: Shape, spec: Spec, seq_len: int, weight_bytes: int) -> Memory:
    # Only one layer's activations live at a time without backward; the logits dominate.
    tokens = spec.schedule.micro_batch * seq_len
    size = compute_bytes(spec)
    per_layer = 2 * shape.hidden + shape.heads * shape.head_dim + 2 * shape.intermediate
    return Memory(weights=count_params(source, shape) * weight_bytes, grads=0, optimizer=0,
                  activations=tokens * (per_layer * size + source.vocab * (size + 4)), masks=0)


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


def lora_params(shape: Shape, rank: int, modules: list[str]) -> int:
    attn, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    in_out = {
        "q_proj": (shape.hidden, attn), "k_proj": (shape.hidden, kv), "v_proj": (shape.hidden, kv),
        "o_proj": (attn, shape.hidden), "gate_proj": (shape.hidden, shape.intermediate),
        "up_proj": (shape.hidden, shape.intermediate), "down_proj": (shape.intermediate, shape.hidden),
    }
    return shape.layers * sum(rank * sum(in_out[m]) for m in modules)


def non_embedding(source: SourceModel, shape: Shape) -> int:
    return count_params(source, shape) - embedding_params(source, shape)


def drpruning_fits(steps: int, eval_interval: int, mixer: DRPruningMixer) -> int:
    """How many of a stage's mixer updates can refit DRPruning's scaling laws: the runtime records an eval once
    fit_history_after of the stage is done (keeping fit_max_points), and fits once it holds fit_min_points and
    fit_min_progress is done. An upper bound: a domain never drawn has no points."""
    evals = sorted({*range(eval_interval, steps + 1, eval_interval), steps})
    recorded = fits = 0
    for step in evals:
        if step / steps >= mixer.fit_history_after:
            recorded = min(recorded + 1, mixer.fit_max_points)
        fits += step / steps >= mixer.fit_min_progress and recorded >= mixer.fit_min_points
    return fits

