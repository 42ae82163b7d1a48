"""Seed specs compile to the published numbers; plans are schema-valid, hashed and reproducible."""

import json
import os
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from shearc.canonical import sha256_of
from shearc.cli import main
from shearc.compiler.compile import compile_spec, plan_text
from shearc.corpus.tasks import write_task

from ..helpers import REPO, SPECS, tiny_spec, write_spec

SEED_SPECS = sorted(SPECS.glob("*.yaml"))
GOLDEN = REPO / "tests" / "golden"
UPDATE_GOLDEN = os.environ.get("SHEARC_UPDATE_GOLDEN") == "1"


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    """Plans must not depend on what this machine happens to have cached."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))


@pytest.fixture(autouse=True)
def cpu_without_native_bf16(monkeypatch):
    """Nor on whether this machine's CPU multiplies bf16 natively (what `precision: auto` asks of it)."""
    from shearc.compiler import precision

    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: None)


@pytest.fixture
def specs_copy(tmp_path):
    """specs/ copied under tmp_path, so plan paths are the same on every machine."""
    shutil.copytree(SPECS, tmp_path / "specs", ignore=shutil.ignore_patterns("data"))  # generated corpora vary
    write_task(tmp_path / "specs" / "tiny" / "data")  # the default's downstream task, as `shearc corpus` writes it
    return tmp_path


def test_seed_specs_exist():
    names = {p.name for p in SEED_SPECS}
    assert {"sheared_llama_1.3b.yaml", "sheared_llama_2.7b.yaml", "drpruning_1.3b.yaml",
            "llm_pruner_llama7b_20pct.yaml"} <= names


@pytest.mark.parametrize(("spec", "target"), [("sheared_llama_1.3b.yaml", "1,345,423,360"),
                                              ("sheared_llama_2.7b.yaml", "2,701,560,320")])
def test_sheared_llama_parameter_counts(specs_copy, capsys, spec, target):
    assert main(["compile", str(specs_copy / "specs" / spec), "-o", str(specs_copy / "plan.json")]) == 0
    assert f"6,738,415,616 -> {target} parameters" in capsys.readouterr().out
    plan = json.loads((specs_copy / "plan.json").read_text())
    assert plan["source"]["model_info"]["params"] == 6_738_415_616
    assert f"{plan['target']['model_info']['params']:,}" == target


@pytest.mark.parametrize(("spec", "source"), [("minitron_llama3_8b.yaml", "8,030,261,248"),
                                             ("minitron_qwen3_8b.yaml", "8,190,735,360"),
                                             ("minitron_gemma2_9b_depth.yaml", "9,241,705,984"),
                                             ("llm_pruner_gemma3_1b.yaml", "999,885,952"),
                                             ("sheared_phi3_mini.yaml", "3,821,079,552"),
                                             ("minitron_llama31_8b_depth.yaml", "8,030,261,248")])
def test_each_family_card_counts_its_models_published_parameters(specs_copy, capsys, spec, source):
    """Llama-3-8B and 3.1-8B, Qwen3-8B, Gemma-2-9B, Gemma-3-1B and Phi-3-mini as their safetensors hold them
    (Gemma's tied head once)."""
    assert main(["compile", str(specs_copy / "specs" / spec), "-o", str(specs_copy / "plan.json")]) == 0
    assert f"{spec.split('.')[0].replace('_', '-')}: {source} -> " in capsys.readouterr().out


@pytest.mark.parametrize(("spec", "counts"), [("minitron_llama3_8b.yaml", "8,030,261,248 -> 4,512,746,496"),
                                             ("minitron_qwen3_8b.yaml", "8,190,735,360 -> 5,977,809,408"),
                                             ("minitron_llama31_8b_depth.yaml", "8,030,261,248 -> 4,540,469,248")])
def test_minitron_reaches_model_optimizers_example_shapes(specs_copy, capsys, spec, counts):
    """Model Optimizer's examples: Llama-3-8B at hidden 3072 and MLP 9216, every layer and head kept ("4.5B");
    Qwen3-8B (8.2B) at hidden 3584 and MLP 9216 ("6B"); Llama-3.1-8B at 16 of its 32 layers ("4.5B")."""
    assert main(["compile", str(specs_copy / "specs" / spec), "-o", str(specs_copy / "plan.json")]) == 0
    assert f"{counts} parameters" in capsys.readouterr().out
    plan = json.loads((specs_copy / "plan.json").read_text())
    assert [s["params"]["method"] for s in plan["stages"] if s["stage"] in ("prune", "recover")] == \
           ["activation", "distill"]


@pytest.mark.parametrize("spec", SEED_SPECS, ids=lambda p: p.name)
def test_seed_spec_matches_schema_and_compiles(specs_copy, spec):
    assert spec.read_text().startswith("# yaml-language-server: $schema=../schemas/spec.schema.json")
    schema = json.loads((REPO / "schemas" / "spec.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(spec.read_text()), schema)
    plan = compile_spec(specs_copy / "specs" / spec.name, specs_copy / "plan.json")
    assert not [w for w in plan.warnings if "hard-concrete steps cannot" in w]  # every seed recipe reaches its target
    plan_schema = json.loads((REPO / "schemas" / "plan.schema.json").read_text())
    jsonschema.validate(plan.model_dump(mode="json"), plan_schema)


def _golden_cases(root: Path) -> dict[str, Path]:
    """Seed specs plus tiny specs on the GQA, biased and tied models."""
    from ..helpers import write_model_dir

    cases = {p.stem: root / "specs" / p.name for p in SEED_SPECS}
    for model, target, prune in [
        ("mistral-gqa", {"kv_heads": 1, "heads": 4, "intermediate": 128}, {"method": "taylor", "iterations": 2}),
        ("qwen2-bias", {"params": 150_000}, {"method": "magnitude", "granularities": ["head", "intermediate",
                                                                                     "hidden"]}),
        ("llama-tied", {"layers": 1, "hidden": 32}, {"method": "hard-concrete", "global_batch": 8, "seq_len": 64,
                                                    "steps": 20, "warmup_steps": 2, "eval_interval": 5}),
    ]:
        write_model_dir(root, model)
        spec = tiny_spec(model, target=target, prune=prune)
        spec["name"] = f"tiny-{model}"
        cases[f"tiny_{model}"] = write_spec(root, spec, f"tiny_{model}.yaml")
    return cases


def test_golden_plans_byte_for_byte(specs_copy):
    mismatched = []
    for name, spec in _golden_cases(specs_copy).items():
        text = plan_text(compile_spec(spec, specs_copy / "plan.json"))
        golden = GOLDEN / f"{name}.plan.json"
        if UPDATE_GOLDEN:
            golden.write_text(text)
        elif golden.read_text() != text:
            mismatched.append(name)
    assert not mismatched, f"plans differ from tests/golden (SHEARC_UPDATE_GOLDEN=1 rewrites): {mismatched}"


def test_recompile_is_byte_identical(specs_copy, capsys):
    spec, plan = str(specs_copy / "specs" / "drpruning_1.3b.yaml"), specs_copy / "plan.json"
    assert main(["compile", spec, "-o", str(plan)]) == 0
    first = plan.read_bytes()
    assert main(["compile", spec, "-o", str(plan)]) == 0
    assert plan.read_bytes() == first


def test_plan_hash_covers_everything_but_itself(specs_copy):
    plan = compile_spec(specs_copy / "specs" / "sheared_llama_2.7b.yaml", specs_copy / "plan.json")
    body = plan.model_dump(mode="json")
    digest = body.pop("plan_sha256")
    assert digest == sha256_of(body)


def test_spec_hash_ignores_written_out_defaults(models):
    short = tiny_spec("llama-mha")
    long = tiny_spec("llama-mha", prune={"method": "magnitude", "norm": "l2", "aggregation": "mean"},
                     schedule={"micro_batch": 4, "min_lr_ratio": 0.1})
    first = compile_spec(write_spec(models, short, "a.yaml"), models / "plan.json")
    second = compile_spec(write_spec(models, long, "b.yaml"), models / "plan.json")
    assert first.spec.sha256 == second.spec.sha256


def test_paths_are_relative_to_the_plan(models):
    (models / "data").mkdir()
    (models / "data" / "a.jsonl").write_text('{"text": "hello"}\n')
    spec = write_spec(models, tiny_spec("llama-mha"))
    plan = compile_spec(spec, models / "out" / "plan.json")
    domain = plan.data.domains[0]
    assert domain.train == ["../data/a.jsonl"]
    assert (domain.train_found.files, domain.train_found.bytes) == (1, 18)
    assert plan.data.domains[1].train_found.files == 0  # absent data is recorded, never needed
    assert plan.source.model == "../llama-mha" and plan.runtime.output_dir == "runs/tiny"


def test_stages_carry_only_their_own_parameters(specs_copy):
    plan = compile_spec(specs_copy / "specs" / "llm_pruner_llama7b_20pct.yaml", specs_copy / "plan.json")
    stages = {s.stage: s for s in plan.stages}
    assert list(stages) == ["prune", "finalize", "recover", "evaluate", "export"]
    assert stages["prune"].params.method == "taylor" and not hasattr(stages["prune"].params, "rank")
    assert stages["recover"].params.rank == 8 and not hasattr(stages["recover"].params, "estimator")
    # taylor's calibration (10 windows of 64 tokens), then the default refit's (128 windows of 2,048)
    assert stages["prune"].params.reconstruct.calibration_seq_len == 2048
    assert stages["prune"].estimate.tokens == 10 * 64 + 128 * 2048
    assert stages["recover"].estimate.tokens == 1618 * 64 * 256
    assert stages["evaluate"].params.seq_len == 256  # the longest stage's, resolved into the plan


@pytest.mark.parametrize(("prune", "refits"), [({"method": "taylor"}, True), ({"method": "magnitude"}, True),
                                                ({"method": "activation", "calibration_seq_len": 64}, True),
                                                ({"method": "taylor", "reconstruct": None}, False),
                                                ({"method": "hard-concrete", "seq_len": 64}, False)])
def test_score_based_selection_refits_by_default_in_windows_the_model_can_read(models, prune, refits):
    """The tiny model reads 256 positions, so the default window (2,048) is cut to 256; hard-concrete's masks
    were trained with the weights, and null turns the refit off."""
    plan = compile_spec(write_spec(models, tiny_spec("llama-mha", prune=prune)), models / "plan.json")
    refit = plan.stages[0].params.reconstruct
    assert (refit is not None) == refits and (plan.stages[0].reconstruction is not None) == refits
    if refits:
        assert (refit.method, refit.calibration_samples, refit.calibration_seq_len) == ("least-squares", 128, 256)


@pytest.mark.parametrize(("refit", "kept"), [(None, False), ({"method": "least-squares"}, True)])
def test_a_target_that_keeps_every_head_and_channel_refits_only_when_asked(models, refit, kept):
    """Only output projections that read pruned heads or MLP channels are refit: a layer or hidden cut has none,
    so the default refit is dropped there; one the spec asks for stays (it costs what it says)."""
    prune = {"method": "magnitude", "granularities": ["layer"], **({"reconstruct": refit} if refit else {})}
    spec = tiny_spec("llama-mha", target={"layers": 1}, prune=prune)
    plan = compile_spec(write_spec(models, spec), models / "plan.json")
    assert (plan.stages[0].params.reconstruct is not None) == kept


def test_no_recovery_and_no_eval_drop_their_stages(models):
    spec = tiny_spec("llama-mha", eval={"enabled": False})
    plan = compile_spec(write_spec(models, spec), models / "plan.json")
    assert [s.stage for s in plan.stages] == ["prune", "finalize", "export"]


def test_memory_estimate_warns_when_a_stage_does_not_fit(specs_copy):
    text = (specs_copy / "specs" / "sheared_llama_1.3b.yaml").read_text()
    spec = specs_copy / "specs" / "no_checkpointing.yaml"
    spec.write_text(text.replace("schedule: {activation_checkpointing: true}\n", ""))
    plan = compile_spec(spec, specs_copy / "plan.json")
    prune = plan.stages[0]
    assert not prune.estimate.fits_device and any("stage prune" in w for w in plan.warnings)


@pytest.mark.parametrize(("mixer", "given", "expected"), [
    ("drpruning", None, "initial"),  # DRPruning's continued pretraining restarts at p_0
    ("dynamic-batch-loading", None, "pruned"),  # Sheared-LLaMA's continues from pruning's proportions
    ("constant", None, "pruned"),
    ("drpruning", "pruned", "pruned"),  # a spec's own choice stands
])
def test_recovery_mixer_start_follows_the_mixer_unless_the_spec_says(models, mixer, given, expected):
    recovery = {"method": "full", "steps": 10, "warmup_steps": 1, "eval_interval": 5, "seq_len": 64}
    if given:
        recovery["mixer_start"] = given
    spec = tiny_spec("llama-mha", mixer={"method": mixer, **({} if mixer == "constant" else {"reference": "source"})},
                     recovery=recovery)
    plan = compile_spec(write_spec(models, spec), models / "plan.json").model_dump(mode="json")
    (recover,) = [s for s in plan["stages"] if s["stage"] == "recover"]
    assert recover["params"]["mixer_start"] == expected
