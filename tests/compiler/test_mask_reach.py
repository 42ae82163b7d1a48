"""The compile-time estimate of whether a hard-concrete stage reaches its target (compiler/mask_reach.py)."""

import pytest
import torch

from shearc.cli import main
from shearc.compiler.families import Shape
from shearc.compiler.mask_reach import estimate, mask_counts, play
from shearc.runtime.masks.l0 import L0Masks
from shearc.runtime.stages.mask_learning import mask_learning_groups
from shearc.runtime.train.loop import adamw
from shearc.schedules import lr_scale
from shearc.sections import HardConcretePruneSpec, ScheduleSpec

from ..helpers import SPECS

SOURCE = Shape(layers=4, hidden=256, heads=8, kv_heads=2, intermediate=704, head_dim=32)
TARGET = Shape(layers=4, hidden=192, heads=4, kv_heads=1, intermediate=448, head_dim=32)
KINDS = ["hidden", "kv_group", "intermediate"]


def hard_concrete(steps: int, **changes) -> HardConcretePruneSpec:
    return HardConcretePruneSpec(method="hard-concrete", steps=steps, warmup_steps=max(1, steps // 10),
                                 global_batch=16, seq_len=256, lr=1e-3, eval_interval=8, **changes)


def test_the_game_is_the_runtimes_lagrangian_and_adamw_without_the_loss():
    """The runtime's own masks and optimizer groups, stepped on the Lagrangian alone (every unit starting equal, no
    clipping), keep the fractions the estimate's one log-alpha per kind keeps, step after step."""
    params, schedule = hard_concrete(40, init_log_alpha_std=0.0), ScheduleSpec()
    l0 = L0Masks(SOURCE, TARGET, KINDS, params)
    optimizer = adamw(mask_learning_groups(torch.nn.Linear(1, 1), l0, params), schedule, torch.device("cpu"))
    warmup = round(params.target_warmup_fraction * params.steps)
    peaks = [group["lr"] for group in optimizer.param_groups]
    runtime = []
    for step in range(params.steps):
        for group, peak in zip(optimizer.param_groups, peaks, strict=True):
            group["lr"] = peak * lr_scale(step, params.steps, params.warmup_steps, schedule.lr_decay,
                                          schedule.min_lr_ratio)
        optimizer.zero_grad()
        l0.lagrangian(step, warmup).backward()
        l0.ascend_multipliers_()
        optimizer.step()
        l0.clamp_()
        with torch.no_grad():
            runtime.append({k: float(v) for k, v in l0.expected_fractions().items()})
    have, keep = mask_counts(SOURCE), mask_counts(TARGET)
    for kind in KINDS:
        game = play(params, schedule, have[kind], keep[kind][1] / have[kind][1], params.steps)
        lowest = min(fractions[kind] for fractions in runtime)
        assert game.lowest == pytest.approx(lowest, abs=2e-3), kind
        reached = next((i + 1 for i, f in enumerate(runtime) if f[kind] <= game.target), None)
        assert game.reached_at == reached, kind


def test_more_steps_or_faster_rates_reach_what_fewer_cannot():
    schedule = ScheduleSpec()
    short = estimate(hard_concrete(12), schedule, SOURCE, TARGET, KINDS)
    assert set(short.short) == set(KINDS) and all(r.lowest > r.target for r in short.kinds.values())
    assert not estimate(hard_concrete(24), schedule, SOURCE, TARGET, KINDS).short
    assert not estimate(hard_concrete(12, mask_lr=3.0, lagrangian_lr=3.0), schedule, SOURCE, TARGET, KINDS).short


def test_compile_warns_with_the_numbers_when_a_stage_is_too_short(tmp_path, capsys):
    import yaml

    spec = yaml.safe_load((SPECS / "tiny_sheared_llama.yaml").read_text())
    spec["source"]["model"] = str(SPECS / "tiny" / "model")
    spec["prune"].update(steps=12, warmup_steps=1, eval_interval=6)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["compile", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "plan.json")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "warning: prune: 12 hard-concrete steps cannot bring the masks to the target" in out
    assert "intermediate 0.9" in out and "against the target's 1.5M" in out and "It would take at least" in out
