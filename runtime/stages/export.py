"""The export stage: a dense model that stock transformers loads, checked before it is published.

Written to a temporary directory beside RUN_DIR/model (save_pretrained with safetensors,
the tokenizer, the plan and a model card), reloaded with AutoModelForCausalLM, checked,
then renamed into place: a crash never leaves a `model/` that looks complete.

Checks: no missing, unexpected or mismatched keys; every dimension and the parameter count
as the plan says; the saved weights equal to the run's model cast to the export dtype. (That
the sliced model computes what the masked model computed is checked by finalize.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from shearc.canonical import atomic_directory, pretty_json
from shearc.errors import CheckFailed
from shearc.plan import ExportPlan, Plan
from shearc.report.events import bad_step_lines, mask_size_lines
from shearc.report.tables import score_text

from ..distributed import is_main
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

Forward latency (batch {report['latency_batch']} x {report['seq_len']}): source {report['source']['latency_ms']:.1f} ms,
result {report['result']['latency_ms']:.1f} ms ({report['result']['tokens_per_second']:,.0f} tokens/s).
{downstream_section(report.get("downstream"))}"""


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


@STAGES.register("export")
class ExportStage(Stage):
    stage_plan: ExportPlan

    def run(self, context: RunContext) -> None:
        if not is_main():  # one writer
            return
        plan, params = context.plan, self.stage_plan.params
        dense = context.dense_model.float().cpu().eval()
        final = context.run_dir / "model"
        with atomic_directory(final) as staging:
            exported = dense.to(_DTYPES[params.dtype])
            exported.save_pretrained(staging, safe_serialization=True, max_shard_size=params.max_shard_size)
            context.tokenizer.save_pretrained(staging)
            (staging / "plan.json").write_text(pretty_json(plan.as_json()), encoding="utf-8")
            checks = {**context.checks, **self._reload_and_check(staging, exported, context)}
            metrics = context.metrics.read()
            (staging / "README.md").write_text(model_card(plan, checks, context.report, bad_step_lines(metrics),
                                                          mask_size_lines(metrics)), encoding="utf-8")
        context.metrics.write("export", directory=str(final), **checks)

    def _reload_and_check(self, directory: Path, exported: torch.nn.Module, context: RunContext) -> dict[str, Any]:
        from transformers import AutoModelForCausalLM

        plan = context.plan
        reloaded, info = AutoModelForCausalLM.from_pretrained(directory, output_loading_info=True,
                                                              dtype=_DTYPES[self.stage_plan.params.dtype])
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
        saved = exported.state_dict()
        problems += [f"weight {k} differs from the checked model" for k, v in reloaded.state_dict().items()
                     if not torch.equal(v, saved[k])]
        if problems:
            raise ExportCheckError("the exported model does not match the plan: " + "; ".join(problems))
        return {"params": params}
