"""`schedule:`, `runtime:`, `export:` and `eval:` sections.

    schedule: {micro_batch: 4, lr_decay: cosine, min_lr_ratio: 0.1}
    runtime: {devices: 8, strategy: fsdp2, seed: 0}
    export: {dtype: bfloat16, tensor_parallel: 2}
    eval: {sequences_per_domain: 64, lm_eval: {preset: minitron}}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section
from .downstream import LmEvalSpec


class ScheduleSpec(Section):
    micro_batch: int = Field(4, gt=0, description="Sequences per device per forward pass; gradient "
                                                  "accumulation makes up each stage's global batch.")
    lr_decay: Literal["cosine", "linear", "constant"] = Field("cosine", description="Decay after warm-up.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final learning rate as a fraction of the peak.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Clip the global gradient norm to this.")
    activation_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")


class RuntimeSpec(Section):
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU.")
    devices: int = Field(1, gt=0, description="Processes (one per GPU) the run expects under torchrun.")
    strategy: Literal["ddp", "fsdp2"] = Field("ddp", description="Data parallel, or FSDP2 sharding.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast over fp32 master weights where the processor multiplies bf16 "
        "natively (CUDA compute capability 8.0+, CPUs with AMX, AVX512-BF16 or Arm BF16), fp32 elsewhere; decided "
        "at compile time (plan.precision).")
    compile: bool = Field(False, description="Compile the training stages' forward and backward with "
                          "torch.compile (the first steps pay the compile time; graph breaks are counted).")
    seed: int = Field(0, ge=0, description="Seed of every random choice (data order, masks, calibration).")
    deterministic: bool = Field(False, description="Use deterministic algorithms (slower; exact resume tests).")
    checkpoint_interval: int = Field(500, gt=0, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(3, gt=0, description="How many recent checkpoints to keep.")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="A step whose loss or gradient norm is NaN or infinite: stop the run (exit 2, the "
        "checkpoints left as they were, all finite), or skip its update and go on.")
    max_skipped_steps: int = Field(10, gt=0, description="With on_nonfinite: skip, stop once more steps than this "
                                   "in a row were skipped.")
    divergence_rise: float | None = Field(
        5.0, gt=0, description="A training step whose LM loss is more than this many nats above the stage's first "
        "step's loss, and above a uniform guess over the vocabulary (ln V), has diverged: its update is not applied, "
        "and under on_nonfinite: stop the third such step in a row ends the run (skip: counted as a skipped step); "
        "null: no such guard. 5 nats is 148 times the perplexity; a healthy stage's loss moves far less "
        "(docs/RELIABILITY.md).")
    output_dir: str | None = Field(None, description="Run directory; default runs/<spec name>.")
    device_memory_gib: float = Field(
        80.0, gt=0, description="Memory of one device, for the compile-time fit check of each stage."
    )


class ExportSpec(Section):
    dtype: Literal["bfloat16", "float16", "float32"] = Field("bfloat16", description="dtype of the saved weights.")
    tensor_parallel: int | None = Field(
        None, gt=0, description="If set, check that heads, kv_heads and intermediate divide by it (for serving)."
    )
    max_shard_size: str = Field("5GB", description="save_pretrained's shard size.")


class EvalSpec(Section):
    enabled: bool = Field(True, description="Evaluate source and result per domain after recovery.")
    sequences_per_domain: int = Field(64, gt=0, description="Eval sequences per domain (cap).")
    seq_len: int | None = Field(None, gt=0, description="Eval sequence length; default: the longest stage's.")
    latency_batch: int = Field(1, gt=0, description="Batch size of the forward-latency measurement.")
    lm_eval: LmEvalSpec | None = Field(None, description="Downstream tasks through lm-evaluation-harness, "
                                       "offline (needs the eval extra).")
