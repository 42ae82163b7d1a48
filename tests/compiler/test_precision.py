"""`runtime.precision: auto` follows the hardware: bf16 where the processor multiplies it natively, fp32 elsewhere;
decided at compile time, recorded in the plan with the reason, and shown by `shearc explain`."""

import platform
from pathlib import Path

import pytest

from shearc.cli import main
from shearc.compiler import precision
from shearc.compiler.compile import compile_spec, write_plan

from ..helpers import tiny_spec, write_model_dir, write_spec


def test_the_spec_decides_when_it_names_a_precision():
    for requested in ("bf16", "fp32"):
        decided = precision.decide(requested)
        assert (decided.cpu, decided.cuda) == (requested, requested)
        assert requested in decided.reason


@pytest.mark.parametrize("instructions", ["AVX512-BF16", None])
def test_auto_follows_the_cpus_instruction_set(monkeypatch, instructions):
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: instructions)
    decided = precision.decide("auto")
    assert decided.cpu == ("bf16" if instructions else "fp32")
    assert decided.cuda == "bf16"
    assert (instructions or "no native bf16") in decided.reason


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 flags from /proc/cpuinfo")
def test_the_instruction_set_found_is_the_processors():
    flags = {flag for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")
             for flag in line.split(":")[1].split()}
    precision.cpu_bf16_instructions.cache_clear()
    found = precision.cpu_bf16_instructions()
    assert (found is not None) == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_the_plan_records_the_choice_and_explain_shows_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: "AVX512-BF16")
    write_model_dir(tmp_path, "llama-mha")
    spec = tiny_spec("llama-mha", runtime={"precision": "auto", "device": "cpu"})
    plan_path = tmp_path / "plan.json"
    plan = compile_spec(write_spec(tmp_path, spec), plan_path)
    assert plan.precision.cpu == "bf16" and "AVX512-BF16" in plan.precision.reason
    cpu_bytes = next(s for s in plan.stages if s.stage == "evaluate").estimate.memory_bytes.weights
    spec["runtime"]["precision"] = "fp32"
    fp32 = compile_spec(write_spec(tmp_path, spec, "fp32.yaml"), plan_path)
    assert next(s for s in fp32.stages if s.stage == "evaluate").estimate.memory_bytes.weights > cpu_bytes
    write_plan(plan, plan_path)
    capsys.readouterr()
    assert main(["explain", str(plan_path)]) == 0
    out = capsys.readouterr().out
    assert "computes on cpu: bf16 autocast over fp32 master weights" in out
    assert "AVX512-BF16" in out
