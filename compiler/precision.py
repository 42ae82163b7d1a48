"""What a run computes in, decided at compile time from `runtime.precision` and the hardware.

    runtime: {precision: auto}   # bf16 autocast where the processor multiplies bf16 natively, else fp32
    runtime: {precision: bf16}   # bf16 autocast on any device
    runtime: {precision: fp32}   # fp32 throughout

Under bf16 the weights that train stay fp32 (master weights and optimizer state) and the matrix
products run in bf16 under autocast; see runtime/precision.py. A CPU that runs bf16 matrix products
natively (AMX, AVX512-BF16, Arm's BF16 extension) does them 2-3 times as fast as fp32 ones
(docs/BENCHMARKS.md, "Training at the machine's speed"); elsewhere bf16 is emulated and slower,
so `auto` keeps fp32 there. CUDA devices of compute capability 8.0 and newer run bf16 natively.

The plan records the choice for either device (`precision.cpu`, `precision.cuda`: which one a run
uses is decided by `runtime.device` when it starts) and why. The CPU's answer is this machine's,
read from the instruction set torch reports (no benchmark): a plan compiled on one machine and run
on a CPU that lacks it still computes as its plan says, and the run warns (runtime/precision.py).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch

Choice = Literal["bf16", "fp32"]
CUDA_BF16_CAPABILITY = (8, 0)  # Ampere: the first CUDA devices with bf16 tensor cores


@lru_cache(maxsize=1)
def cpu_bf16_instructions() -> str | None:
    """The instruction set this machine's CPU multiplies bf16 matrices with natively, or None."""
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX"
    if getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX512-BF16"
    if platform.machine() in ("aarch64", "arm64") and "bf16" in _arm_features():
        return "Arm BF16"
    return None


def _arm_features() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("Features") for flag in line.split(":")[1].split()}


@dataclass(frozen=True)
class Precision:
    cpu: Choice
    cuda: Choice
    reason: str

    def on(self, device_type: str) -> Choice:
        return self.cuda if device_type == "cuda" else self.cpu

    def as_dict(self) -> dict[str, str]:
        return {"cpu": self.cpu, "cuda": self.cuda, "reason": self.reason}


def decide(requested: str) -> Precision:
    """`runtime.precision` resolved for a CPU and a CUDA device."""
    if requested in ("bf16", "fp32"):
        return Precision(requested, requested, f"runtime.precision: {requested}")
    instructions = cpu_bf16_instructions()
    cpu_reason = (f"this machine's CPU multiplies bf16 natively ({instructions})" if instructions
                  else "this machine's CPU has no native bf16 matrix products")
    return Precision("bf16" if instructions else "fp32", "bf16",
                     f"auto: {cpu_reason}; CUDA devices of compute capability "
                     f"{CUDA_BF16_CAPABILITY[0]}.{CUDA_BF16_CAPABILITY[1]} and newer do")
