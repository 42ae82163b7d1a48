"""Which dtypes a run computes and holds weights in, from the plan's `runtime.precision` and the device.

    precision: auto   # bf16 on CUDA, fp32 on CPU
    precision: bf16   # bf16 anywhere
    precision: fp32   # fp32 anywhere

Training keeps fp32 master weights and autocasts to the compute dtype. A model that is only
read (the source under taylor or magnitude scoring, the source at evaluation) is held in the
compute dtype itself: half the memory under bf16, the same arithmetic.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from shearc.plan import Plan


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.bfloat16 if bf16 else torch.float32


def source_dtype(plan: Plan, device: torch.device) -> torch.dtype:
    """fp32 when the prune method trains the source's weights (hard-concrete); else the compute dtype."""
    if plan.prune.params.trains_source:
        return torch.float32
    return compute_dtype(plan.runtime.precision, device)


def compute_autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """Autocast to the compute dtype (nothing to do under fp32); reusable across `with` blocks."""
    dtype = compute_dtype(precision, device)
    return torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
