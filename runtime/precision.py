"""Which dtypes a run computes and holds weights in: the plan's `precision` (decided at compile time,
compiler/precision.py) on the device the run found.

Training keeps fp32 master weights and autocasts to the compute dtype. A model that is only
read (the source under taylor or magnitude scoring, the source at evaluation) is held in the
compute dtype itself: half the memory under bf16, the same arithmetic.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from shearc.compiler.precision import CUDA_BF16_CAPABILITY, cpu_bf16_instructions
from shearc.plan import Plan, PrecisionPlan


def compute_dtype(precision: PrecisionPlan, device: torch.device) -> torch.dtype:
    chosen = precision.cuda if device.type == "cuda" else precision.cpu
    return torch.bfloat16 if chosen == "bf16" else torch.float32


def source_dtype(plan: Plan, device: torch.device) -> torch.dtype:
    """fp32 when the prune method trains the source's weights (hard-concrete); else the compute dtype."""
    if plan.prune.params.trains_source:
        return torch.float32
    return compute_dtype(plan.precision, device)


def compute_autocast(precision: PrecisionPlan, device: torch.device) -> AbstractContextManager[Any]:
    """Autocast to the compute dtype (nothing to do under fp32); reusable across `with` blocks."""
    dtype = compute_dtype(precision, device)
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()


def describe(plan: Plan, device: torch.device) -> tuple[str, str | None]:
    """What the run computes in on `device`, for its first lines, and a warning where the plan chose bf16 for
    hardware this device is not (bf16 emulated: right, but slower than fp32)."""
    dtype = compute_dtype(plan.precision, device)
    if dtype == torch.float32:
        return "fp32", None
    line = "bf16 autocast over fp32 master weights"
    if device.type == "cuda":
        native = torch.cuda.get_device_capability(device) >= CUDA_BF16_CAPABILITY
    else:
        native = cpu_bf16_instructions() is not None
    if native:
        return line, None
    return line, (f"the plan computes in bf16 on {device.type} ({plan.precision.reason}), but this {device.type} "
                  "does not multiply bf16 natively, so it runs slower than fp32 would; recompile the spec on this "
                  "machine (runtime.precision: auto picks fp32 here) or set runtime.precision: fp32")
