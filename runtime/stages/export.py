"""The export stage: a dense model that stock transformers loads, checked before it is published.

The weights are read from RUN_DIR/dense/ (dense_shards.py: the dense model in fp32, as the stages before wrote it)
one tensor at a time, cast to the export dtype and written into its file before the next is read (the header of
each file is known from the planned shapes: streamed_safetensors.py), so the export holds one tensor while it
writes and the reloaded model while it checks, never the dense model whole, nor a whole shard. What is written,
and in what order, is taken from a model of the dense config built on the meta device, not from the files: its
state_dict's names in its order, a tied output head once (under the embedding's name), as save_pretrained writes
them; its config.json and generation_config.json as save_pretrained writes them; the files named and grouped as it
names and groups them (model.safetensors, or model-0000N-of-0000M.safetensors with model.safetensors.index.json).
So the same dense weights give the same bytes whatever number of processes
made them and however RUN_DIR/dense/ lists them.

Written to a temporary directory beside RUN_DIR/model (the weights and config, the tokenizer, the plan and a model
card), reloaded with AutoModelForCausalLM, checked, then renamed into place: a crash never leaves a `model/` that
looks complete.

Checks: the dense weights are the planned model's tensors (no name missing or extra, every shape as planned); on
reload, no missing, unexpected or mismatched keys; every dimension and the parameter count as the plan says; every
reloaded weight equal to the dense weight cast to the export dtype, read again one at a time. (That the sliced
model computes what the masked model computed is checked by finalize.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from shearc.canonical import atomic_directory, pretty_json
from shearc.compiler.source import hf_config
from shearc.errors import CheckFailed
from shearc.plan import ExportPlan, Plan
from shearc.report.events import bad_step_lines, mask_size_lines
from shearc.report.tables import score_text

from ..dense_shards import ShardedWeights
from ..distributed import is_main
from ..memory import release_freed, trim_heap
from ..streamed_safetensors import write_as_save_pretrained
from .base import STAGES, RunContext, Stage

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class ExportCheckError(CheckFailed):
    """The saved model is not the one the run produced: a bug (exit 1)."""


def model_card(plan: Plan, checks: dict[str, Any], report: dict[str, Any] | None,
               bad_steps: list[str] | None = None, mask_sizes: list[str] | None = None) -> str:
    source, target = plan.source.model_info, plan.target.model_info
    stages = ", ".join(s.stage + (f" ({s.params.method})" if hasattr(getattr(s, "params", None), "method") else "")
                       for s in plan.stages)
    rows = "\n".join(f"| {name} | {value} | {getattr(target.shape, name)} |"
                     for name, value in source.shape.model_dump().items())
    return f"""---
library_name: transformers
base_model: {plan.source.model}
tags: [shearc, pruning]
---

# {plan.spec.name}

{plan.spec.description or 'Pruned with shearc.'}

A dense {plan.source.architecture} pruned from `{plan.source.model}` by shearc
{plan.shearc_version} (plan sha256 `{plan.plan_sha256}`, in `plan.json` beside this card).

| | source | target |
|---|---|---|
{rows}
| parameters | {source.params:,} | {target.params:,} |

Stages: {stages}. Mixer: {plan.mixer.method}.
{pruning_section(mask_sizes or [])}
{logits_check(checks['logits'])}; at export, strict reload, dimensions and parameter count as planned,
weights equal to the run's model.
{bad_steps_section(bad_steps or [])}{report_section(report)}"""


def pruning_section(lines: list[str]) -> str:
    """Where hard-concrete pruning left the masks' expected size against the target, and what finalize did."""
    return "".join(f"\nPruning: {line}.\n" for line in lines)


def bad_steps_section(lines: list[str]) -> str:
    """Training steps whose update was not applied (skipped, or dropped before a stop), so a reader knows of them."""
    if not lines:
        return ""
    return "\nTraining steps not applied:\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"


def logits_check(logits: dict[str, Any]) -> str:
    return (f"Checks: after slicing, on {logits['tokens']} tokens of eval text, the dense model's logits within "
            f"{logits['max_difference']:.2e} of the masked model's ({logits['dtype']}; tolerance "
            f"{logits['tolerance']:.2e}, from a rounding spread of {logits['rounding_spread']:.2e}), top-1 agreement "
            f"{logits['top1_agreement']:.2%}, KL {logits['kl']:.2e} nats per token")


def report_section(report: dict[str, Any] | None) -> str:
    if not report:
        return ""
    rows = "\n".join(f"| {d} | {s['loss']:.4f} | {s['perplexity']:.2f} | {r['loss']:.4f} | {r['perplexity']:.2f} |"
                     for d, s, r in zip(report["domains"], report["source"]["domains"], report["result"]["domains"],
                                        strict=True))
    return f"""
## Per-domain evaluation

| domain | source loss | source ppl | result loss | result ppl |
|---|---|---|---|---|
{rows}

Forward latency (batch {report['latency_batch']} x {report['seq_len']}): {latency_text(report)}.
{downstream_section(report.get("downstream"))}"""


def latency_text(report: dict[str, Any]) -> str:
    """Each model's forward latency, or that it was not measured (it fits no one device)."""
    def one(model: dict[str, Any]) -> str:
        if model["latency_ms"] is None:
            return "not measured (it does not fit one device)"
        return f"{model['latency_ms']:.1f} ms ({model['tokens_per_second']:,.0f} tokens/s)"
    return f"source {one(report['source'])}, result {one(report['result'])}"


def downstream_section(downstream: dict[str, Any] | None) -> str:
    """The lm-eval tasks, each with the metric written out: value ± standard error, source and result."""
    if not downstream:
        return ""
    rows = "\n".join(f"| {t['task']} | {t['metric']} | {t['num_fewshot']} | {score_text(t['source'])} | "
                     f"{score_text(t['result'])} | {t['result']['samples']} |" for t in downstream["tasks"])
    limit = f", at most {downstream['limit']} examples per task" if downstream["limit"] else ""
    return f"""
## Downstream tasks (lm-eval {downstream['lm_eval_version']}{limit})

| task | metric | shots | source | result | examples |
|---|---|---|---|---|---|
{rows}
"""


def planned_model(config: dict[str, Any]) -> torch.nn.Module:
    """A model of the dense config on the meta device (no weights): what names, shapes and configs are exported."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(hf_config(config))
    model.tie_weights()  # built on the meta device, a tied head is a parameter of its own until tied again
    return model


def saved_names(model: torch.nn.Module) -> list[str]:
    """The tensors save_pretrained writes for `model`, in its state_dict's order: a tensor held under several names
    (a tied output head) under the first only, and none of the class's `_keys_to_ignore_on_save`."""
    ignored = set(getattr(model, "_keys_to_ignore_on_save", None) or ())
    seen: set[int] = set()
    names = []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen and name not in ignored:
            names.append(name)
        seen.add(id(tensor))
    return names


def write_configs(model: torch.nn.Module, dtype: torch.dtype, directory: Path) -> None:
    """config.json and generation_config.json as save_pretrained writes them for `model` with weights in `dtype`."""
    config = model.config
    config.architectures = [type(model).__name__]
    # save_pretrained records the weights' dtype: `dtype` since transformers 4.56 (`torch_dtype` its alias), before
    # that `torch_dtype`, an attribute of its own
    setattr(config, "torch_dtype" if "torch_dtype" in vars(config) else "dtype", str(dtype).removeprefix("torch."))
    config.save_pretrained(directory)
    if model.can_generate():
        model.generation_config.save_pretrained(directory)


def _equal_by_rows(reloaded: torch.Tensor, weights: Mapping[str, torch.Tensor], key: str,
                   dtype: torch.dtype) -> bool:
    """Whether the reloaded tensor is the dense model's `key` in `dtype`, compared a block of rows at a time when
    the dense weights are read from files (a whole fp32 embedding read, copied and cast at once was the export's
    peak: 280 MiB beside SmolLM2's reload)."""
    if not isinstance(weights, ShardedWeights):
        return torch.equal(reloaded, weights[key].to(dtype))
    equal = all(torch.equal(reloaded[start:start + len(rows)] if reloaded.dim() else reloaded, rows.to(dtype))
                for start, rows in weights.row_blocks(key))
    trim_heap()  # the blocks read, back before the next tensor's (memory.trimmed_after_each says why)
    return equal


@STAGES.register("export")
class ExportStage(Stage):
    stage_plan: ExportPlan

    def run(self, context: RunContext) -> None:
        context.dense_model = None  # what is exported is read from RUN_DIR/dense/: the copy in memory can go
        release_freed(collect=True)
        if not is_main():  # one writer
            return
        plan, params = context.plan, self.stage_plan.params
        dtype = _DTYPES[params.dtype]
        weights = context.dense_weights()
        model = planned_model(context.dense_config())
        names = saved_names(model)
        final = context.run_dir / "model"
        with atomic_directory(final) as staging:
            write_configs(model, dtype, staging)
            self._write_weights(staging, weights, model, names, dtype)
            context.tokenizer.save_pretrained(staging)
            (staging / "plan.json").write_text(pretty_json(plan.as_json()), encoding="utf-8")
            checks = {**context.checks, **self._reload_and_check(staging, weights, context)}
            metrics = context.metrics.read()
            (staging / "README.md").write_text(model_card(plan, checks, context.report, bad_step_lines(metrics),
                                                          mask_size_lines(metrics)), encoding="utf-8")
        context.metrics.write("export", directory=str(final), **checks)

    def _write_weights(self, directory: Path, weights: Mapping[str, torch.Tensor], model: torch.nn.Module,
                       names: list[str], dtype: torch.dtype) -> None:
        """`names` of `weights` in `dtype`, one tensor at a time, as save_pretrained lays them out; refused when the
        weights are not the planned model's (a name missing or extra, a shape not as planned)."""
        from transformers.utils.hub import convert_file_size_to_int

        planned = model.state_dict()  # on the meta device: names and shapes
        held = set(weights)  # the names alone; `in` on the mapping would read the tensor
        missing = [name for name in planned if name not in held]
        extra = sorted(held - set(planned))
        if missing or extra:
            raise ExportCheckError("the dense weights are not the planned model's: "
                                   + "; ".join(f"{kind} {keys}" for kind, keys in
                                               (("missing", missing), ("not in the model", extra)) if keys))
        shape_of = weights.shape if isinstance(weights, ShardedWeights) else (lambda name: weights[name].shape)
        wrong = [f"{name} {list(shape)}, planned {list(planned[name].shape)}" for name in names
                 if (shape := shape_of(name)) != planned[name].shape]
        if wrong:
            raise ExportCheckError("the dense weights are not the planned model's: " + "; ".join(wrong))
        shard_bytes = convert_file_size_to_int(self.stage_plan.params.max_shard_size)  # as save_pretrained reads it
        write_as_save_pretrained({name: planned[name].shape for name in names}, dtype,
                                 lambda name: weights[name].to(dtype), directory, shard_bytes=shard_bytes,
                                 index_metadata={"total_parameters": model.num_parameters()})

    def _reload_and_check(self, directory: Path, weights: Mapping[str, torch.Tensor],
                          context: RunContext) -> dict[str, Any]:
        from transformers import AutoModelForCausalLM

        plan, dtype = context.plan, _DTYPES[self.stage_plan.params.dtype]
        reloaded, info = AutoModelForCausalLM.from_pretrained(directory, output_loading_info=True, dtype=dtype)
        problems = [f"{kind}: {keys}" for kind, keys in info.items() if keys]
        config = json.loads((directory / "config.json").read_text())
        shape = plan.target.model_info.shape
        expected = {"num_hidden_layers": shape.layers, "hidden_size": shape.hidden,
                    "num_attention_heads": shape.heads, "num_key_value_heads": shape.kv_heads,
                    "intermediate_size": shape.intermediate, "head_dim": shape.head_dim}
        problems += [f"config {k} = {config.get(k)}, planned {v}" for k, v in expected.items() if config.get(k) != v]
        params = sum(p.numel() for p in reloaded.parameters())
        if params != plan.target.model_info.params:
            problems.append(f"{params:,} parameters, planned {plan.target.model_info.params:,}")
        held = set(weights)
        problems += [f"weight {k} differs from the dense model's" for k, v in reloaded.state_dict().items()
                     if k not in held or not _equal_by_rows(v, weights, k, dtype)]
        if problems:
            raise ExportCheckError("the exported model does not match the plan: " + "; ".join(problems))
        return {"params": params}
