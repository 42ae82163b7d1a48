"""The training loop honours the plan's precision: bf16 autocast over fp32 weights, or fp32 throughout."""

import torch
from safetensors.torch import load_file

from shearc.cli import main
from shearc.runtime.stages import recover

from ...helpers import tiny_project


def test_precision_decides_the_autocast(tmp_path, monkeypatch):
    steps = {"steps": 3, "global_batch": 4, "seq_len": 16, "warmup_steps": 1, "eval_interval": 3, "lr": 1e-3}
    spec = {"target": {"layers": 3, "hidden": 32, "heads": 4, "intermediate": 96},
            "prune": {"method": "magnitude", "granularities": ["layer", "head", "intermediate", "hidden"]},
            "recovery": {"method": "full", **steps}, "export": {"dtype": "float32"}}
    seen = []
    original = recover.sequence_losses

    def recording(model, ids):
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(model, ids)

    monkeypatch.setattr(recover, "sequence_losses", recording)
    weights = {}
    for precision in ("fp32", "bf16"):
        root = tmp_path / precision
        root.mkdir()
        plan = tiny_project(root, "llama-mha", {**spec, "runtime": {"precision": precision}})
        seen.clear()
        assert main(["run", str(plan), "--out", str(root / "run")]) == 0
        assert seen and all(seen) == (precision == "bf16")
        weights[precision] = load_file(root / "run" / "model" / "model.safetensors")
    assert all(w.dtype == torch.float32 for w in weights["bf16"].values())  # master weights stay fp32
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(weights["bf16"][name], weights["fp32"][name])
    torch.testing.assert_close(weights["bf16"][name], weights["fp32"][name], rtol=0.05, atol=0.01)


def test_adamw_is_the_fused_kernel_on_a_cpu_and_steps_as_the_per_tensor_loop_does():
    from shearc.runtime.train.loop import adamw
    from shearc.sections import ScheduleSpec

    torch.manual_seed(0)
    weights = [torch.randn(64, 32), torch.randn(32)]
    grads = [torch.randn_like(w) for w in weights]
    stepped = {}
    for fused in (True, False):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        optimizer = adamw([{"params": params, "lr": 1e-2}], ScheduleSpec(weight_decay=0.1), torch.device("cpu"),
                          fused=fused)
        assert bool(optimizer.defaults["fused"]) == fused
        for _ in range(3):
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad.clone()
            optimizer.step()
        stepped[fused] = [p.detach() for p in params]
    assert not torch.equal(stepped[True][0], weights[0])
    for fused, loop in zip(stepped[True], stepped[False], strict=True):
        torch.testing.assert_close(fused, loop, rtol=1e-6, atol=1e-6)
