"""The evaluate stage: source and result side by side, per domain, written to RUN_DIR/report.json.

    eval: {sequences_per_domain: 64, latency_batch: 1}

Per-domain eval loss and perplexity, parameter count, forward latency (median of 5 after a
warm-up) and tokens per second, for the unmodified source and for the result, in the plan's compute dtype.
Under FSDP2 on several processes both models are read sharded from their files for the losses, and each is
loaded whole on rank 0 alone, in turn, for its latency (on one device, as served); lm-eval's tasks still run on
whole models in every process. A model's latency is measured only when it fits one device (the plan's
`latency_of`, from runtime.device_memory_gib); the other's is reported as not measured (null).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch

from shearc.canonical import pretty_json, write_text_atomic
from shearc.plan import EvaluatePlan
from shearc.sections import EvalSpec

from ..data import domain_eval_losses
from ..distributed import any_sharded, from_main, is_main
from ..downstream import run_tasks, version
from ..memory import release_freed, trimmed_after_each
from ..models import model_from_weights
from ..output import into_log
from ..precision import compute_autocast, compute_dtype
from .base import STAGES, RunContext, Stage

LATENCY_RUNS = 5
NOT_MEASURED = {"latency_ms": None, "tokens_per_second": None}  # a model that fits no one device
SIDES = ("source", "result")


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


def losses(model: torch.nn.Module, domains: list, params: EvalSpec, batch_size: int, device: torch.device,
           autocast: AbstractContextManager[Any], layer_prefix: str | None = None) -> dict[str, Any]:
    """The model's parameter count and per-domain eval losses (under FSDP2 every process takes part). A model FSDP2
    shards over CPU processes has the heap trimmed after every second decoder block under `layer_prefix`: the
    blocks it gathers in turn grew each process by 245 MiB a model where trimming kept 129 (and a forward took 0.49
    s for 0.33: bench/bench_heap_trim.py), a price paid where memory per process is the point."""
    model.eval()
    blocks = model.get_submodule(layer_prefix) if layer_prefix and any_sharded(model) else ()
    with autocast, trimmed_after_each(blocks, device, every=2):
        found = domain_eval_losses(model, domains, seq_len=params.seq_len, max_sequences=params.sequences_per_domain,
                                   batch_size=batch_size, device=device)
    return {"params": sum(p.numel() for p in model.parameters()),
            "domains": [{"loss": float(loss), "perplexity": math.exp(float(loss))} for loss in found]}


def latency(model: torch.nn.Module, ids: torch.Tensor, autocast: AbstractContextManager[Any]) -> dict[str, float]:
    """The forward latency of the batch `ids` and the tokens per second it means, on one device as served."""
    model.eval()
    with autocast:
        milliseconds = forward_latency_ms(model, ids)
    return {"latency_ms": milliseconds, "tokens_per_second": ids.numel() / (milliseconds / 1000)}


def latency_batch(params: EvalSpec, *, vocab: int, seed: int, device: torch.device, bos: int | None) -> torch.Tensor:
    """Random tokens (behind `bos`, as every window), the same for source and result."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (params.latency_batch, params.seq_len), generator=generator)
    if bos is not None:
        ids[:, 0] = bos
    return ids.to(device)


def compare(source: torch.nn.Module, result: torch.nn.Module, domains: list, params: EvalSpec, *, vocab: int,
            seed: int, batch_size: int, device: torch.device, bos: int | None = None,
            autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
            latency_of: tuple[str, ...] | list[str] = SIDES, layer_prefix: str | None = None) -> dict[str, Any]:
    """The report: source and result measured on the same eval sequences and the same latency batch (the latency
    of those in `latency_of`), both under `autocast()` (the plan's compute dtype)."""
    ids = latency_batch(params, vocab=vocab, seed=seed, device=device, bos=bos)
    return {**header(domains, params),
            **{side: {**losses(model, domains, params, batch_size, device, autocast(), layer_prefix),
                      **(latency(model, ids, autocast()) if side in latency_of else NOT_MEASURED)}
               for side, model in zip(SIDES, (source, result), strict=True)}}


def header(domains: list, params: EvalSpec) -> dict[str, Any]:
    return {"domains": [d.name for d in domains], "seq_len": params.seq_len, "latency_batch": params.latency_batch}


@STAGES.register("evaluate")
class EvaluateStage(Stage):
    stage_plan: EvaluatePlan

    def downstream(self, context: RunContext, source: torch.nn.Module, result: torch.nn.Module,
                   autocast: Callable[[], AbstractContextManager[Any]]) -> dict[str, Any]:
        """Every lm-eval task on the source and on the result: per task its metric, few-shot count, and each
        model's value, standard error and examples scored."""
        tasks, lm_eval = self.stage_plan.downstream, self.stage_plan.params.lm_eval
        with into_log(context.run_dir):  # lm-eval's and datasets' progress bars, drawn on stderr
            scored = run_tasks({"source": source, "result": result}, context.tokenizer, tasks,
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
        autocast = lambda: compute_autocast(plan.precision, context.device)  # noqa: E731
        if context.sharding:
            report = self.sharded_report(context, domains, autocast)
        else:
            source, result = context.source_for_reading(), context.dense_for_reading()
            report = compare(source, result, domains, params, vocab=context.verified.source.vocab, seed=context.seed,
                             batch_size=plan.schedule.micro_batch, device=context.device, bos=plan.data.window_bos,
                             autocast=autocast, latency_of=self.stage_plan.latency_of,
                             layer_prefix=context.verified.source.adapter.layer_prefix)
            # every process scores them (one would leave the others waiting at the next collective past its timeout)
            if self.stage_plan.downstream:
                report["downstream"] = self.downstream(context, source, result, autocast)
            del source, result
        context.release_source()
        if is_main():
            write_text_atomic(context.run_dir / "report.json", pretty_json(report))
        context.report = report
        context.metrics.write("evaluate", **report)
        context.save_complete("evaluate", 0, None, {"report": report, "mixer": context.mixer_state})

    def sharded_report(self, context: RunContext, domains: list,
                       autocast: Callable[[], AbstractContextManager[Any]]) -> dict[str, Any]:
        """The report with both models sharded over the processes (FSDP2): the losses with each process holding
        its part of each model; the latency on one device, as the model would be served: rank 0 loads each model
        that fits one device whole in turn, after the sharded ones are let go, while the others wait."""
        plan, params = context.plan, self.stage_plan.params
        computes_in = compute_dtype(plan.precision, context.device)
        context.release_source()  # pruning's sharded weights: not the source's
        report = header(domains, params)
        for side, sharded in (("source", lambda: context.sharded_source(computes_in)),
                              ("result", context.sharded_dense)):  # one after the other: one model held at a time
            model = sharded()
            report[side] = losses(model, domains, params, plan.schedule.micro_batch, context.device, autocast(),
                                  context.verified.source.adapter.layer_prefix)
            del model
            release_freed(collect=True)
        if self.stage_plan.downstream:  # lm-eval's tasks on whole models in every process, as before sharding:
            source, result = context.source_for_reading(), context.dense_from_shards()  # not yet tried sharded
            report["downstream"] = self.downstream(context, source, result, autocast)
            del source, result
            release_freed(collect=True)
        ids = latency_batch(params, vocab=context.verified.source.vocab, seed=context.seed, device=context.device,
                            bos=plan.data.window_bos)
        source_config = context.verified.source.config
        for side, whole in (("source", lambda: model_from_weights(source_config, context.source_weights(computes_in),
                                                                  computes_in, context.device, context.source_held_as)),
                            ("result", context.dense_from_shards)):
            if side not in self.stage_plan.latency_of:
                report[side].update(NOT_MEASURED)
                continue
            measured = np.zeros(2)
            if is_main():
                model = whole()
                measured[:] = list(latency(model, ids, autocast()).values())
                del model
                release_freed(collect=True)
            report[side].update(zip(("latency_ms", "tokens_per_second"), map(float, from_main(measured)),
                                    strict=True))
        return report
