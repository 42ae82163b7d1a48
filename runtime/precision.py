"""Which dtypes a run computes and holds weights in: the plan's `precision` (decided at compile time,
compiler/precision.py) on the device the run found.

Training keeps fp32 master weights and autocasts to the compute dtype. A model that is only
read (the source under taylor or magnitude scoring, the source at evaluation) is held in the
compute dtype itself: half the memory under bf16, the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch

from shearc.compiler.precision import CUDA_BF16_CAPABILITY, cpu_bf16_instructions
from shearc.plan import Plan, PrecisionPlan

from .distributed import is_sharded


def compute_dtype(precision: PrecisionPlan, device: torch.device) -> torch.dtype:
    chosen = precision.cuda if device.type == "cuda" else precision.cpu
    return torch.bfloat16 if chosen == "bf16" else torch.float32


def source_dtype(plan: Plan, device: torch.device) -> torch.dtype:
    """fp32 when the prune method trains the source's weights (hard-concrete) or takes their gradients (taylor);
    else the compute dtype."""
    if plan.prune.params.holds_source_in_fp32:
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


HALF = (torch.bfloat16, torch.float16)


@contextmanager
def computing_in_fp32(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, `model` computes in fp32 whatever dtype its weights are held in: each module's own
    half-precision weights are upcast while that module runs and back in their dtype (exactly: every bf16 or
    fp16 value is an fp32 value) when it returns, so the memory beyond the half-precision model is one module's
    weights in fp32 at a time. A model held in fp32 is left as it is."""
    # FSDP2's sharded weights are cast as they are gathered (distributed.shard_for_reading), not here
    held = [(param, param.dtype) for param in model.parameters() if param.dtype in HALF and not is_sharded(param)]
    dtypes = {id(param): dtype for param, dtype in held}

    def upcast(module: torch.nn.Module, _args: tuple) -> None:
        for param in module.parameters(recurse=False):
            if param.dtype in HALF:
                param.data = param.data.float()

    def restore(module: torch.nn.Module, _args: tuple, _output: Any) -> None:
        for param in module.parameters(recurse=False):
            if id(param) in dtypes and param.dtype != dtypes[id(param)]:
                param.data = param.data.to(dtypes[id(param)])

    owners = [m for m in model.modules() if any(id(p) in dtypes for p in m.parameters(recurse=False))]
    handles = [h for m in owners for h in (m.register_forward_pre_hook(upcast), m.register_forward_hook(restore))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for param, dtype in held:  # a forward that raised left its module upcast
            if param.dtype != dtype:
                param.data = param.data.to(dtype)
