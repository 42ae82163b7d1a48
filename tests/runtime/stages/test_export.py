"""The export stage: a checked model directory appears whole, or not at all."""

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from shearc.compiler.compile import compile_spec
from shearc.compiler.source import hf_config
from shearc.runtime.metrics import MetricsLog
from shearc.runtime.stages.export import ExportCheckError, ExportStage, model_card

from ...helpers import tiny_spec, tiny_tokenizer, write_spec

LOGITS = {"tokens": 128, "max_difference": 1e-6, "dtype": "torch.float32", "tolerance": 1e-4,
          "rounding_spread": 1e-6, "top1_agreement": 1.0, "kl": 1e-9}


@pytest.fixture
def exporting(models, tmp_path):
    plan = compile_spec(write_spec(models, tiny_spec("llama-mha", export={"dtype": "float32"})), models / "plan.json")
    torch.manual_seed(0)
    dense = AutoModelForCausalLM.from_config(hf_config(plan.target.config))
    context = SimpleNamespace(plan=plan, dense_model=dense, run_dir=tmp_path / "run", checks={"logits": LOGITS},
                              report=None, tokenizer=tiny_tokenizer(tmp_path / "tokenizer", ["a b c"]),
                              metrics=MetricsLog(tmp_path / "metrics.jsonl"))
    context.run_dir.mkdir()
    return ExportStage(plan.stage("export")), context


def test_the_exported_model_reloads_as_planned_with_its_plan_and_card(exporting):
    stage, context = exporting
    stage.run(context)
    directory = context.run_dir / "model"
    reloaded = AutoModelForCausalLM.from_pretrained(directory)
    for name, weight in context.dense_model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], weight)
    assert (directory / "plan.json").read_text().startswith("{")
    card = (directory / "README.md").read_text()
    assert context.plan.plan_sha256 in card and f"{context.plan.target.model_info.params:,}" in card
    assert context.metrics.read("export")[0]["params"] == context.plan.target.model_info.params


def test_a_model_that_is_not_the_planned_one_is_refused_and_nothing_is_published(exporting):
    stage, context = exporting
    config = dict(context.plan.target.config, intermediate_size=context.plan.target.config["intermediate_size"] + 8)
    context.dense_model = AutoModelForCausalLM.from_config(hf_config(config))
    with pytest.raises(ExportCheckError, match="intermediate_size"):
        stage.run(context)
    assert not (context.run_dir / "model").exists()


def test_the_card_names_the_stages_methods_and_the_per_domain_results(exporting):
    _, context = exporting
    report = {"domains": ["a"], "seq_len": 16, "latency_batch": 1,
              "source": {"domains": [{"loss": 2.0, "perplexity": 7.39}], "latency_ms": 2.0},
              "result": {"domains": [{"loss": 2.5, "perplexity": 12.18}], "latency_ms": 1.0,
                         "tokens_per_second": 16000.0}}
    card = model_card(context.plan, {"logits": LOGITS}, report)
    assert "prune (magnitude)" in card and "| a | 2.0000 | 7.39 | 2.5000 | 12.18 |" in card
