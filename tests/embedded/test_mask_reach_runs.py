"""The compile-time estimate of a hard-concrete stage's reach (compiler/mask_reach.py) against what runs of the
embedded model reach, with the default's pruning at a quarter of its tokens a step, at two lengths: 12 steps, which
the estimate calls short, and 24, which it calls enough. The estimate leaves out the LM loss, which only holds units
back, so a run never reaches a kind's target before the estimate does."""

import json

import pytest
import yaml

from shearc.cli import main
from shearc.runtime.metrics import MetricsLog

from ..helpers import SPECS


def _run(tmp_path, corpus, steps: int, capsys):
    spec = yaml.safe_load((SPECS / "tiny_drpruning.yaml").read_text())
    spec["source"]["model"] = str(SPECS / "tiny" / "model")
    for domain in spec["data"]["domains"]:
        domain["train"] = [str(corpus / domain["name"] / "train.jsonl")]
        domain["eval"] = [str(corpus / domain["name"] / "eval.jsonl")]
    spec["prune"].update(steps=steps, warmup_steps=steps // 10, eval_interval=steps // 2, global_batch=8, seq_len=128)
    spec.update(name=f"reach-{steps}", recovery={"method": "none"}, eval={"enabled": False})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["compile", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "plan.json")]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    capsys.readouterr()
    assert main(["run", str(tmp_path / "plan.json")]) == 0
    run_dir = tmp_path / "runs" / spec["name"]
    return plan, MetricsLog(run_dir / "metrics.jsonl"), run_dir, capsys.readouterr().err


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    assert main(["corpus", str(out), "--train-documents", "400", "--eval-documents", "20"]) == 0
    return out


@pytest.mark.parametrize("steps", [12, 24])
def test_runs_reach_the_target_no_sooner_than_the_estimate_says(tmp_path, corpus, capsys, steps):
    from shearc.compiler.families import Shape
    from shearc.compiler.mask_reach import estimate
    from shearc.sections import HardConcretePruneSpec, ScheduleSpec

    plan, metrics, run_dir, err = _run(tmp_path, corpus, steps, capsys)
    warned = any("hard-concrete steps cannot" in w for w in plan["warnings"])
    (prune,) = [s for s in plan["stages"] if s["stage"] == "prune"]
    params, schedule = HardConcretePruneSpec.model_validate(prune["params"]), ScheduleSpec(**plan["schedule"])
    shapes = [Shape(**plan[model]["model_info"]["shape"]) for model in ("source", "target")]
    reach = estimate(params, schedule, *shapes, [unit["kind"] for unit in plan["target"]["pruned_units"]])
    assert warned == bool(reach.short) == (steps == 12)
    steps_logged = metrics.read("train")
    for kind, estimated in reach.kinds.items():
        reached = next((r["step"] for r in steps_logged if r["expected_fraction"][kind] <= estimated.target), None)
        if estimated.reached_at is None:
            assert reached is None, kind  # short by the estimate: short in the run
        elif reached is not None:
            assert reached >= estimated.reached_at, kind  # the loss only holds units back
    (size,) = metrics.read("mask_size")
    lowest = min(r["expected_params"] for r in steps_logged)
    if steps == 12:
        assert size["expected_params"] > 1.5 * size["target_params"] and size["dropped_alive"] > 0
    else:
        assert lowest <= size["target_params"]  # the run did reach it (and, this short, went past it)
    line = f"prune: the masks' expected size ended at {size['expected_params'] / 1e6:,.2f}M parameters"
    assert line in err and line in (run_dir / "run.log").read_text()
    card = (run_dir / "model" / "README.md").read_text()
    assert f"Pruning: {line.removeprefix('prune: ')}" in card and "finalize keeps exactly the target's units" in card
    assert main(["report", str(run_dir)]) == 0
    assert line.replace("prune: ", "pruning: ") in " ".join(capsys.readouterr().out.split())
