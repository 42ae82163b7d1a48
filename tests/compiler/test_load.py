"""Broken specs: exit code 2, every problem named by file, line and field path, never a traceback."""

import copy
import subprocess
import sys

import pytest

from shearc.cli import main

from ..helpers import tiny_spec, write_spec


def _with(path: str, value):
    """A transform setting a dotted path (creating sections as needed) in a tiny spec."""
    def apply(spec):
        node = spec
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
        node[keys[-1]] = value
        return spec
    return apply


def _drop(path: str):
    def apply(spec):
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[last]
        return spec
    return apply


def _both(*transforms):
    def apply(spec):
        for transform in transforms:
            spec = transform(spec)
        return spec
    return apply


HC = {"method": "hard-concrete", "global_batch": 8, "seq_len": 64, "steps": 10, "warmup_steps": 1, "eval_interval": 5}
LORA = {"method": "lora", "steps": 10, "global_batch": 8, "seq_len": 64, "warmup_steps": 1, "eval_interval": 5}
REFERENCES = _both(_with("data.domains.0.reference_loss", 2.0), _with("data.domains.1.reference_loss", 2.5))

# (id, model, transform, field path that must be named, fragment of the message)
FIELD_CASES = [
    ("unknown-section", "llama-mha", _with("prunning", {}), "prunning", "did you mean 'prune'"),
    ("unknown-source-key", "llama-mha", _with("source.modle", "x"), "source.modle", "did you mean 'model'"),
    ("missing-source-model", "llama-mha", _drop("source.model"), "source.model", "required"),
    ("missing-name", "llama-mha", _drop("name"), "name", "required"),
    ("bad-name", "llama-mha", _with("name", "has space"), "name", "pattern"),
    ("zero-layers", "llama-mha", _with("target.layers", 0), "target.layers", "greater than 0"),
    ("string-heads", "llama-mha", _with("target.heads", "four"), "target.heads", "integer"),
    ("shape-and-budget", "llama-mha", _with("target.params", "100K"), "target.params", "not both"),
    ("bad-budget", "llama-mha", _both(_drop("target.heads"), _drop("target.intermediate"),
                                      _with("target.params", "lots")), "target.params", "parameter count"),
    ("unknown-prune-method", "llama-mha", _with("prune.method", "hardconcrete"), "prune.method",
     "did you mean 'hard-concrete'"),
    ("missing-prune-method", "llama-mha", _drop("prune.method"), "prune.method", "missing `method`"),
    ("negative-steps", "llama-mha", _with("prune", {**HC, "steps": -5}), "prune.steps", "greater than 0"),
    ("zero-temperature", "llama-mha", _with("prune", {**HC, "temperature": 0}), "prune.temperature",
     "greater than 0"),
    ("repeated-granularity", "llama-mha", _with("prune.granularities", ["head", "head"]),
     "prune.granularities", "listed once"),
    ("unknown-granularity", "llama-mha", _with("prune.granularities", ["attention"]),
     "prune.granularities[0]", "'layer', 'head', 'intermediate' or 'hidden'"),
    ("unknown-estimator", "llama-mha", _with("prune", {"method": "taylor", "estimator": "third-order"}),
     "prune.estimator", "element-first"),
    ("taylor-typo", "llama-mha", _with("prune", {"method": "taylor", "calibration_sample": 4}),
     "prune.calibration_sample", "did you mean 'calibration_samples'"),
    ("no-domains", "llama-mha", _with("data.domains", []), "data.domains", "at least 1"),
    ("weight-above-one", "llama-mha", _with("data.domains.0.weight", 1.5), "data.domains[0].weight",
     "less than or equal to 1"),
    ("weights-sum", "llama-mha", _with("data.domains.0.weight", 0.2), "data.domains", "sum to 0.7"),
    ("duplicate-domain", "llama-mha", _with("data.domains.1.name", "a"), "data.domains[1].name", "already named"),
    ("domain-without-train", "llama-mha", _drop("data.domains.0.train"), "data.domains[0].train", "required"),
    ("domain-without-eval", "llama-mha", _with("data.eval_fraction", 0), "data.domains[0].eval", "no eval files"),
    ("unknown-mixer", "llama-mha", _with("mixer", {"method": "dro"}), "mixer.method", "expected one of"),
    ("negative-rho", "llama-mha", _both(REFERENCES, _with("mixer", {"method": "drpruning", "rho": -0.1})),
     "mixer.rho", "greater than 0"),
    ("missing-reference", "llama-mha", _with("mixer", {"method": "dynamic-batch-loading"}),
     "data.domains[0].reference_loss", "has none"),
    ("zero-rank", "llama-mha", _with("recovery", {**LORA, "rank": 0}), "recovery.rank", "greater than 0"),
    ("unknown-lora-module", "llama-mha", _with("recovery", {**LORA, "target_modules": ["qkv_proj"]}),
     "recovery.target_modules[0]", "q_proj"),
    ("batch-not-divisible", "llama-mha", _both(_with("prune", HC), _with("schedule.micro_batch", 3)),
     "prune.global_batch", "not a multiple"),
    ("short-betas", "llama-mha", _with("schedule.betas", [0.9]), "schedule.betas[1]", "too few items"),
    ("unknown-strategy", "llama-mha", _with("runtime.strategy", "zero3"), "runtime.strategy", "'ddp' or 'fsdp2'"),
    ("fp16", "llama-mha", _with("runtime.precision", "fp16"), "runtime.precision", "'auto', 'bf16' or 'fp32'"),
    ("warmup-too-long", "llama-mha", _with("prune", {**HC, "warmup_steps": 10}), "prune.warmup_steps",
     "does not fit"),
    ("zero-eval-sequences", "llama-mha", _with("eval.sequences_per_domain", 0), "eval.sequences_per_domain",
     "greater than 0"),
    # compile-time feasibility, located the same way
    ("tensor-parallel", "llama-mha", _with("export.tensor_parallel", 3), "export.tensor_parallel",
     "not divisible by tensor_parallel 3"),
    ("grow-heads", "llama-mha", _with("target.heads", 16), "target.heads", "exceeds the source's 8"),
    ("heads-not-divisible", "mistral-gqa", _with("target.heads", 3), "target.heads", "divisible by kv_heads"),
    ("merge-kv-groups", "mistral-gqa", _both(_with("target.heads", 8), _with("target.kv_heads", 1)),
     "target.kv_heads", "not merged"),
    ("granularity-off", "llama-mha", _with("target.hidden", 32), "prune.granularities", "'hidden'"),
    ("hard-concrete-query-heads", "mistral-gqa", _with("prune", HC), "target.heads", "whole KV groups"),
    ("nothing-to-prune", "llama-mha", _with("target", {"heads": 8}), "target", "nothing to prune"),
    ("seq-len-too-long", "llama-mha", _with("recovery", {**LORA, "seq_len": 4096}), "recovery.seq_len",
     "max_position_embeddings"),
    ("calibration-too-long", "llama-mha", _with("prune", {"method": "taylor", "calibration_seq_len": 4096}),
     "prune.calibration_seq_len", "max_position_embeddings"),
    ("reconstruction-too-long", "llama-mha", _with("prune", {"method": "magnitude", "reconstruct": {
        "method": "least-squares", "calibration_seq_len": 2048}}),
     "prune.reconstruct.calibration_seq_len", "2048 exceeds the model's max_position_embeddings 256"),
    ("unknown-reconstruction", "llama-mha", _with("prune", {"method": "magnitude", "reconstruct": {"method": "obs"}}),
     "prune.reconstruct.method", "least-squares"),
    ("zero-reconstruction-windows", "llama-mha", _with("prune", {
        "method": "magnitude", "reconstruct": {"method": "least-squares", "calibration_samples": 0}}),
     "prune.reconstruct.calibration_samples", "greater than 0"),
    ("model-not-found", "llama-mha", _with("source.model", "no/such-model"), "source.model",
     "cannot find the source model's config"),
]

DOCUMENT_CASES = [
    ("yaml-syntax", "name: x\nsource: {model: a\n", 3, "YAML error"),
    ("python-tag", "name: !!python/object/apply:os.system ['true']\n", 1, "safe_load"),
    ("not-a-mapping", "- a\n- b\n", 1, "expected a mapping"),
    ("duplicate-key", "name: a\nname: b\n", 2, "duplicate key 'name'"),
]


def test_battery_is_large_enough():
    assert len(FIELD_CASES) >= 30


@pytest.mark.parametrize(("model", "transform", "field", "fragment"), [c[1:] for c in FIELD_CASES],
                         ids=[c[0] for c in FIELD_CASES])
def test_broken_spec_names_the_field(models, capsys, model, transform, field, fragment):
    path = write_spec(models, transform(copy.deepcopy(tiny_spec(model))))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if f" {field}: " in line]
    assert lines, err
    assert any(fragment in line for line in lines), err
    assert all(line.strip().startswith(f"{path}:") for line in lines)  # file:line:column: prefix


@pytest.mark.parametrize(("text", "line", "fragment"), [c[1:] for c in DOCUMENT_CASES],
                         ids=[c[0] for c in DOCUMENT_CASES])
def test_broken_document_names_the_line(tmp_path, capsys, text, line, fragment):
    path = write_spec(tmp_path, text)
    assert main(["compile", str(path), "-o", str(tmp_path / "plan.json")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and fragment in err and f"{path}:{line}:" in err
    assert not (tmp_path / "plan.json").exists()


def test_every_problem_is_listed_at_once(models, capsys):
    spec = tiny_spec("llama-mha")
    spec["source"]["modle"] = "x"
    spec["runtime"] = {"strategy": "zero3", "seed": -1}
    spec["data"]["domains"][0]["weight"] = 2
    assert main(["validate", str(write_spec(models, spec))]) == 2
    err = capsys.readouterr().err
    for field in ("source.modle", "runtime.strategy", "runtime.seed", "data.domains[0].weight"):
        assert f" {field}: " in err


def test_real_command_exits_2_without_traceback(models):
    path = write_spec(models, _with("prune.method", "tailor")(tiny_spec("llama-mha")))
    result = subprocess.run([sys.executable, "-m", "shearc.cli", "compile", str(path), "-o",
                             str(models / "plan.json")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "prune.method" in result.stderr and "'taylor'" in result.stderr
    assert not (models / "plan.json").exists()
