"""`shearc run` end to end on tiny models saved to local directories: prune, finalize, export, reload."""

import json

import pytest
import torch

from shearc.cli import main
from shearc.compiler.compile import compile_spec, write_plan
from shearc.compiler.source import hf_config
from shearc.runtime.metrics import MetricsLog

from ..helpers import TINY_CONFIGS, tiny_spec, tiny_tokenizer, write_jsonl, write_spec

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def _project(tmp_path, name, spec_changes):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model_dir = tmp_path / name
    AutoModelForCausalLM.from_config(hf_config(TINY_CONFIGS[name])).save_pretrained(model_dir)
    # Its own directory: beside a Qwen2 config.json, AutoTokenizer would pick Qwen2's class for it.
    tiny_tokenizer(tmp_path / "tokenizer", [" ".join(WORDS)])
    for domain, offset in (("a", 0), ("b", 3)):
        write_jsonl(tmp_path / "data" / f"{domain}.jsonl",
                    [" ".join(WORDS[(i * offset + j) % 10] for j in range(20)) for i in range(30)])
    spec = tiny_spec(name, **spec_changes)
    spec["eval"] = {"enabled": False}
    spec["data"]["tokenizer"] = "tokenizer"
    plan_path = tmp_path / "plan.json"
    write_plan(compile_spec(write_spec(tmp_path, spec), plan_path), plan_path)
    return plan_path


CASES = {
    "taylor-gqa": ("mistral-gqa", {"target": {"heads": 4, "kv_heads": 1, "intermediate": 96, "hidden": 32,
                                              "layers": 3},
                                   "prune": {"method": "taylor", "granularities": ["layer", "head", "hidden",
                                                                                   "intermediate"],
                                             "calibration_samples": 4, "calibration_seq_len": 16}}),
    "magnitude-qwen2": ("qwen2-bias", {"target": {"heads": 2, "intermediate": 64}, "export": {"dtype": "float32"}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_run_emits_a_dense_model_that_transformers_loads(tmp_path, capsys, case):
    from transformers import AutoModelForCausalLM

    name, changes = CASES[case]
    plan_path = _project(tmp_path, name, changes)
    plan = json.loads(plan_path.read_text())
    assert main(["run", str(plan_path)]) == 0
    model_dir = tmp_path / "runs" / "tiny" / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert sum(p.numel() for p in model.parameters()) == plan["target"]["model_info"]["params"]
    assert model.config.num_attention_heads == plan["target"]["model_info"]["shape"]["heads"]
    assert (model_dir / "tokenizer.json").read_text() == (tmp_path / "tokenizer" / "tokenizer.json").read_text()
    assert json.loads((model_dir / "plan.json").read_text())["plan_sha256"] == plan["plan_sha256"]
    assert "tags: [shearc, pruning]" in (model_dir / "README.md").read_text()
    (export,) = MetricsLog(tmp_path / "runs" / "tiny" / "metrics.jsonl").read("export")
    assert export["max_logit_difference"] < 1e-4
    # a finished run is not redone
    assert main(["run", str(plan_path)]) == 0
    assert "already holds this finished run" in capsys.readouterr().err


def test_a_plan_for_another_model_is_refused_before_any_work(tmp_path, capsys):
    plan_path = _project(tmp_path, "qwen2-bias", {})
    config_path = tmp_path / "qwen2-bias" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(rms_norm_eps=1e-3, intermediate_size=128)
    config_path.write_text(json.dumps(config))
    assert main(["run", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "rms_norm_eps" in err and "intermediate_size" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_parts_not_yet_landed_are_refused_clearly(tmp_path, capsys):
    plan_path = _project(tmp_path, "llama-mha", {"prune": {"method": "hard-concrete", "steps": 10, "global_batch": 4,
                                                           "seq_len": 16, "warmup_steps": 1, "eval_interval": 5},
                                                 "recovery": {"method": "full", "steps": 10, "global_batch": 4,
                                                              "seq_len": 16, "warmup_steps": 1, "eval_interval": 5}})
    assert main(["run", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot run prune method hard-concrete yet" in err and "cannot run stage recover (full) yet" in err


def test_a_failed_export_check_leaves_no_model_but_keeps_the_masks(tmp_path, monkeypatch):
    from shearc.runtime.stages import export

    plan_path = _project(tmp_path, "qwen2-bias", {})
    monkeypatch.setattr(export, "LOGITS_TOLERANCE", 0.0)  # nothing can pass
    with pytest.raises(export.ExportCheckError, match="logits differ"):
        main(["run", str(plan_path)])
    run_dir = tmp_path / "runs" / "tiny"
    assert not (run_dir / "model").exists() and not (run_dir / "done.json").exists()
    assert (run_dir / "masks.safetensors").is_file()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".model.")]
