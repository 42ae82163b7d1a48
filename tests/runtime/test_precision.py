"""The run computes in what the plan chose for the device it found, and says so; a plan that chose bf16 for a CPU
this one is not warns that it runs slower than fp32 here."""

import torch

from shearc.compiler import precision as compiler_precision
from shearc.plan import PrecisionPlan
from shearc.runtime import precision

CPU = torch.device("cpu")


def test_the_compute_dtype_is_the_plans_choice_for_the_device():
    chosen = PrecisionPlan(cpu="fp32", cuda="bf16", reason="test")
    assert precision.compute_dtype(chosen, CPU) == torch.float32
    assert precision.compute_dtype(chosen, torch.device("cuda")) == torch.bfloat16
    with precision.compute_autocast(PrecisionPlan(cpu="bf16", cuda="bf16", reason="test"), CPU):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with precision.compute_autocast(chosen, CPU):
        assert not torch.is_autocast_enabled("cpu")


class _Plan:
    def __init__(self, cpu: str) -> None:
        self.precision = PrecisionPlan(cpu=cpu, cuda="bf16", reason="auto: compiled elsewhere")


def test_bf16_on_a_cpu_without_it_warns_and_with_it_does_not(monkeypatch):
    monkeypatch.setattr(compiler_precision, "cpu_bf16_instructions", lambda: None)
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: None)
    line, warning = precision.describe(_Plan("bf16"), CPU)
    assert line.startswith("bf16 autocast") and "recompile" in warning and "compiled elsewhere" in warning
    assert precision.describe(_Plan("fp32"), CPU) == ("fp32", None)
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: "AMX")
    assert precision.describe(_Plan("bf16"), CPU)[1] is None
