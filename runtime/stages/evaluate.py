"""The evaluate stage: source and result side by side, per domain, written to RUN_DIR/report.json.

    eval: {sequences_per_domain: 64, latency_batch: 1}

Per-domain eval loss and perplexity, parameter count, forward latency (median of 5 after a
warm-up) and tokens per second, for the unmodified source and for the result, in the plan's compute dtype.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from shearc.canonical import pretty_json, write_text_atomic
from shearc.plan import EvaluatePlan
from shearc.sections import EvalSpec

from ..data import domain_eval_losses
from ..distributed import is_main
from ..downstream import run_tasks, version
from ..output import into_log
from ..precision import compute_autocast
from .base import STAGES, RunContext, Stage

LATENCY_RUNS = 5


def forward_latency_ms(model: torch.nn.Module, ids: torch.Tensor) -> float:
    times = []
    with torch.no_grad():
        for run in range(LATENCY_RUNS + 1):
            started = time.perf_counter()
            model(input_ids=ids)
            if ids.device.type == "cuda":
                torch.cuda.synchronize()
            if run:  # the first is a warm-up
                times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def measure(model: torch.nn.Module, domains: list, params: EvalSpec, ids: torch.Tensor, batch_size: int,
            device: torch.device, autocast: AbstractContextManager[Any]) -> dict[str, Any]:
    model.eval()
    with autocast:
        losses = domain_eval_losses(model, domains, seq_len=params.seq_len,
                                    max_sequences=params.sequences_per_domain, batch_size=batch_size, device=device)
        latency = forward_latency_ms(model, ids)
    return {"params": sum(p.numel() for p in model.parameters()),
            "domains": [{"loss": float(loss), "perplexity": math.exp(float(loss))} for loss in losses],
            "latency_ms": latency, "tokens_per_second": ids.numel() / (latency / 1000)}


def compare(source: torch.nn.Module, result: torch.nn.Module, domains: list, params: EvalSpec, *, vocab: int,
            seed: int, batch_size: int, device: torch.device, bos: int | None = None,
            autocast: Callable[[], AbstractContextManager[Any]] = nullcontext) -> dict[str, Any]:
    """The report: source and result measured on the same eval sequences and the same latency batch (random
    tokens, behind `bos` as every window), both under `autocast()` (the plan's compute dtype)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (params.latency_batch, params.seq_len), generator=generator)
    if bos is not None:
        ids[:, 0] = bos
    ids = ids.to(device)
    return {"domains": [d.name for d in domains], "seq_len": params.seq_len, "latency_batch": params.latency_batch,
            "source": measure(source, domains, params, ids, batch_size, device, autocast()),
            "result": measure(result, domains, params, ids, batch_size, device, autocast())}


@STAGES.register("evaluate")
class EvaluateStage(Stage):
    stage_plan: EvaluatePlan

    def downstream(self, context: RunContext, source: torch.nn.Module,
                   autocast: Callable[[], AbstractContextManager[Any]]) -> dict[str, Any]:
        """Every lm-eval task on the source and on the result: per task its metric, few-shot count, and each
        model's value, standard error and examples scored."""
        tasks, lm_eval = self.stage_plan.downstream, self.stage_plan.params.lm_eval
        with into_log(context.run_dir):  # lm-eval's and datasets' progress bars, drawn on stderr
            scored = run_tasks({"source": source, "result": context.dense_model}, context.tokenizer, tasks,
                               context.verified.plan_dir, limit=lm_eval.limit, batch_size=lm_eval.batch_size,
                               device=context.device, seed=context.seed,
                               bos=context.plan.data.window_bos is not None, autocast=autocast)
        return {"lm_eval_version": version(), "limit": lm_eval.limit,
                "tasks": [{"task": task.task, "metric": task.metric, "num_fewshot": task.num_fewshot,
                           "source": before, "result": after}
                          for task, before, after in zip(tasks, scored["source"], scored["result"], strict=True)]}

    def run(self, context: RunContext) -> None:
        plan, params = context.plan, self.stage_plan.params
        domains = context.load_domains(params.seq_len, head=params.sequences_per_domain * params.seq_len)
        source = context.source_for_reading()
        autocast = lambda: compute_autocast(plan.precision, context.device)  # noqa: E731
        report = compare(source, context.dense_model, domains, params, vocab=context.verified.source.vocab,
                         seed=context.seed, batch_size=plan.schedule.micro_batch, device=context.device,
                         bos=plan.data.window_bos, autocast=autocast)
        if self.stage_plan.downstream:  # every process scores them (one would leave the others waiting at the
            report["downstream"] = self.downstream(context, source, autocast)  # next collective past its timeout)
        del source
        context.release_source()
        if is_main():
            write_text_atomic(context.run_dir / "report.json", pretty_json(report))
        context.report = report
        context.metrics.write("evaluate", **report)
        context.save_complete("evaluate", 0, None, {"report": report, "mixer": context.mixer_state})
