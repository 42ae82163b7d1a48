"""The export stage: a checked model directory appears whole, or not at all."""

import json
from collections.abc import Mapping
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from shearc.compiler.compile import compile_spec
from shearc.compiler.source import hf_config
from shearc.runtime.dense_shards import ShardedWeights, write_shards
from shearc.runtime.metrics import MetricsLog
from shearc.runtime.stages.export import ExportCheckError, ExportStage, model_card

from ...helpers import tiny_spec, tiny_tokenizer, write_spec

LOGITS = {"tokens": 128, "max_difference": 1e-6, "dtype": "torch.float32", "tolerance": 1e-4,
          "rounding_spread": 1e-6, "top1_agreement": 1.0, "kl": 1e-9}


def _write_dense(context, model, order=lambda items: items, shard_bytes=None):
    """`model` into RUN_DIR/dense/ as a run writes it (RunContext.write_dense: fp32, a tied head once), its
    tensors in `order`."""
    items = [(k, v) for k, v in model.state_dict().items() if not (context.tied and k == "lm_head.weight")]
    write_shards(order(items), context.run_dir / "dense", shard_bytes=shard_bytes)


def _context(models, tmp_path, family="llama-mha", run="run", **export):
    """An export stage of a tiny plan and a context as a run hands it over: its dense model (`context.dense`, for
    the test to compare with; the stage reads RUN_DIR/dense/) written into RUN_DIR/dense/."""
    spec = write_spec(models, tiny_spec(family, export={"dtype": "float32", **export}), f"{family}.yaml")
    plan = compile_spec(spec, models / f"{family}.plan.json")
    torch.manual_seed(0)
    dense = AutoModelForCausalLM.from_config(hf_config(plan.target.config))
    run_dir = tmp_path / run
    run_dir.mkdir()
    tied = bool(plan.target.config["tie_word_embeddings"])
    context = SimpleNamespace(plan=plan, dense=dense, tied=tied, run_dir=run_dir, checks={"logits": LOGITS},
                              report=None, tokenizer=tiny_tokenizer(tmp_path / "tokenizer", ["a b c"]),
                              metrics=MetricsLog(run_dir / "metrics.jsonl"), dense_config=lambda: plan.target.config,
                              dense_weights=lambda: ShardedWeights(run_dir / "dense", {"lm_head.weight":
                                                                   "model.embed_tokens.weight"} if tied else None))
    _write_dense(context, dense)
    return ExportStage(plan.stage("export")), context


class _Listed(Mapping):
    """`weights` listing their names in the order given."""

    def __init__(self, weights, names):
        self.weights, self.names = weights, names

    def __getitem__(self, name):
        return self.weights[name]

    def __iter__(self):
        return iter(self.names)

    def __len__(self):
        return len(self.names)


@pytest.fixture
def exporting(models, tmp_path):
    return _context(models, tmp_path)


def _reloads_as_the_dense_model(directory, dense):
    reloaded, info = AutoModelForCausalLM.from_pretrained(directory, output_loading_info=True)
    assert not any(info.values())
    state = reloaded.state_dict()
    assert state.keys() == dense.state_dict().keys()
    assert all(torch.equal(state[name], weight) for name, weight in dense.state_dict().items())
    return reloaded


def test_the_exported_model_reloads_as_planned_with_its_plan_and_card(exporting):
    stage, context = exporting
    stage.run(context)
    directory = context.run_dir / "model"
    _reloads_as_the_dense_model(directory, context.dense)
    assert {p.name for p in directory.iterdir()} == {"config.json", "generation_config.json", "model.safetensors",
                                                     "tokenizer.json", "tokenizer_config.json", "plan.json",
                                                     "README.md"}
    config = json.loads((directory / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    assert (directory / "plan.json").read_text().startswith("{")
    card = (directory / "README.md").read_text()
    assert context.plan.plan_sha256 in card and f"{context.plan.target.model_info.params:,}" in card
    assert context.metrics.read("export")[0]["params"] == context.plan.target.model_info.params


def test_a_model_that_is_not_the_planned_one_is_refused_and_nothing_is_published(exporting):
    stage, context = exporting
    config = dict(context.plan.target.config, intermediate_size=context.plan.target.config["intermediate_size"] + 8)
    _write_dense(context, AutoModelForCausalLM.from_config(hf_config(config)))
    with pytest.raises(ExportCheckError, match=r"mlp\.gate_proj\.weight \[104, 64\], planned \[96, 64\]"):
        stage.run(context)
    assert not (context.run_dir / "model").exists()


def test_dense_weights_with_a_tensor_missing_or_one_too_many_are_refused(exporting):
    stage, context = exporting
    _write_dense(context, context.dense, lambda items: [*items[1:], ("extra.weight", torch.zeros(2))])
    with pytest.raises(ExportCheckError, match=r"missing \['model\.embed_tokens\.weight'\].*\['extra\.weight'\]"):
        stage.run(context)
    assert not (context.run_dir / "model").exists()


def test_the_export_is_the_same_bytes_however_the_dense_files_list_the_tensors(models, tmp_path):
    """As a run on one process or on several may write RUN_DIR/dense/: other orders, other shards (and an export
    in several shards, whose grouping follows the order written)."""
    exported = []
    for run, order, shard_bytes in [("one", lambda items: items, None), ("other", lambda items: items[::-1], 4096)]:
        stage, context = _context(models, tmp_path, run=run, max_shard_size="100KB")
        _write_dense(context, context.dense, order, shard_bytes)
        listed = context.dense_weights()  # and a mapping that lists them in the order written
        context.dense_weights = lambda listed=listed, order=order: _Listed(listed, order(list(listed)))
        assert len(list((context.run_dir / "dense").iterdir())) > (2 if shard_bytes else 1)
        stage.run(context)
        exported.append({p.name: p.read_bytes() for p in (context.run_dir / "model").iterdir()})
    assert exported[0] == exported[1]


def test_a_model_over_the_shard_size_is_sharded_as_save_pretrained_shards_it(models, tmp_path):
    stage, context = _context(models, tmp_path, max_shard_size="100KB")
    stage.run(context)
    directory = context.run_dir / "model"
    weight_map = json.loads((directory / "model.safetensors.index.json").read_text())["weight_map"]
    files = sorted(p.name for p in directory.glob("*.safetensors"))
    assert len(files) > 2 and files == [f"model-{n:05d}-of-{len(files):05d}.safetensors"
                                        for n in range(1, len(files) + 1)]
    assert set(weight_map.values()) == set(files) and not (directory / "model.safetensors").exists()
    _reloads_as_the_dense_model(directory, context.dense)
    reference = tmp_path / "save_pretrained"  # stock transformers' own layout, file for file
    context.dense.save_pretrained(reference, max_shard_size="100KB")
    assert all((directory / name).read_bytes() == (reference / name).read_bytes()
               for name in [*files, "model.safetensors.index.json"])


@pytest.mark.parametrize("family", ["llama-tied", "gemma3", "qwen2-bias", "phi3-fused"])
def test_a_model_in_one_file_is_the_bytes_save_pretrained_writes(models, tmp_path, family):
    """The file is written a tensor at a time (streamed_safetensors.py); save_pretrained writes it whole."""
    stage, context = _context(models, tmp_path, family=family)
    stage.run(context)
    reference = tmp_path / "save_pretrained"
    context.dense.save_pretrained(reference)
    assert (context.run_dir / "model" / "model.safetensors").read_bytes() == \
        (reference / "model.safetensors").read_bytes()


def test_a_tied_model_exports_its_embedding_once_and_reloads_tied(models, tmp_path):
    stage, context = _context(models, tmp_path, family="llama-tied")
    stage.run(context)
    directory = context.run_dir / "model"
    with safe_open(directory / "model.safetensors", framework="pt") as saved:
        names = set(saved.keys())
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    reloaded = _reloads_as_the_dense_model(directory, context.dense)
    assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight


def test_the_card_names_the_stages_methods_and_the_per_domain_results(exporting):
    _, context = exporting
    report = {"domains": ["a"], "seq_len": 16, "latency_batch": 1,
              "source": {"domains": [{"loss": 2.0, "perplexity": 7.39}], "latency_ms": 2.0,
                         "tokens_per_second": 8000.0},
              "result": {"domains": [{"loss": 2.5, "perplexity": 12.18}], "latency_ms": 1.0,
                         "tokens_per_second": 16000.0}}
    card = model_card(context.plan, {"logits": LOGITS}, report)
    assert "prune (magnitude)" in card and "| a | 2.0000 | 7.39 | 2.5000 | 12.18 |" in card
    assert "source 2.0 ms (8,000 tokens/s), result 1.0 ms (16,000 tokens/s)" in card
