"""The run computes in what the plan chose for the device it found, and says so; a plan that chose bf16 for a CPU
this one is not warns that it runs slower than fp32 here."""

import copy

import pytest
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


def _bf16_model():
    from transformers import AutoModelForCausalLM

    from shearc.compiler.source import hf_config

    from ..helpers import TINY_CONFIGS

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(hf_config(TINY_CONFIGS["gemma3"])).to(torch.bfloat16).eval()


def test_a_bf16_model_computes_in_fp32_one_module_at_a_time_and_is_left_as_it_was():
    model = _bf16_model()
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    held = {name: p.detach().clone() for name, p in model.named_parameters()}
    upcast_at_once = []

    def count(module, _args):  # registered after the upcast: what is in fp32 while a module runs
        upcast_at_once.append([n for n, p in model.named_parameters() if p.dtype == torch.float32])

    with torch.no_grad():
        as_fp32 = copy.deepcopy(model).float()(input_ids=ids).logits
        with precision.computing_in_fp32(model):
            handles = [m.register_forward_pre_hook(count) for m in model.modules()
                       if isinstance(m, torch.nn.Linear)]
            logits = model(input_ids=ids).logits
            for handle in handles:
                handle.remove()
    assert logits.dtype == torch.float32 and torch.equal(logits, as_fp32)  # what the fp32 model computes
    assert upcast_at_once and all(len(names) == 1 for names in upcast_at_once)  # a Linear's weight, no more
    for name, param in model.named_parameters():
        assert param.dtype == torch.bfloat16 and torch.equal(param, held[name]), name


def test_a_forward_that_raises_leaves_the_weights_in_their_dtype():
    model = _bf16_model()

    down_proj = model.model.layers[0].mlp.down_proj

    def fail(module, _args):  # registered after the upcast: the module's weight is in fp32 when it raises
        assert module.weight.dtype == torch.float32
        raise RuntimeError("stopped halfway")

    with pytest.raises(RuntimeError, match="halfway"), torch.no_grad(), precision.computing_in_fp32(model):
        down_proj.register_forward_pre_hook(fail)
        model(input_ids=torch.zeros(1, 4, dtype=torch.long))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize(("method", "held"), [("hard-concrete", torch.float32), ("taylor", torch.float32),
                                              ("magnitude", torch.bfloat16), ("activation", torch.bfloat16)])
def test_the_source_is_held_in_fp32_where_pruning_trains_it_or_takes_its_gradients(method, held):
    from types import SimpleNamespace

    from shearc.sections.prune import PRUNE_METHODS

    params = PRUNE_METHODS.get(method).model_construct(method=method)
    plan = SimpleNamespace(prune=SimpleNamespace(params=params),
                           precision=PrecisionPlan(cpu="bf16", cuda="bf16", reason="test"))
    assert precision.source_dtype(plan, CPU) == held
