"""The report's tables, printed with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .events import bad_step_lines, mask_size_lines
from .records import RunRecord

NOT_MEASURED = "not measured"


def size_and_speed(report: dict) -> Table:
    source, result = report["source"], report["result"]
    table = Table(title=f"size and speed (forward of {report['latency_batch']} x {report['seq_len']} tokens)")
    for column in ("", "source", "result", "result / source"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row("parameters", f"{source['params']:,}", f"{result['params']:,}",
                  f"{result['params'] / source['params']:.3f}")
    for title, key, form in (("latency (ms)", "latency_ms", ",.2f"), ("tokens / s", "tokens_per_second", ",.0f")):
        before, after = source[key], result[key]  # None: the model fits no one device, so it was not measured
        ratio = f"{after / before:.3f}" if before is not None and after is not None else ""
        table.add_row(title, *(NOT_MEASURED if v is None else format(v, form) for v in (before, after)), ratio)
    if source["latency_ms"] is None or result["latency_ms"] is None:
        table.caption = "not measured: the model does not fit one device (runtime.device_memory_gib)"
    return table


def per_domain(report: dict) -> Table:
    table = Table(title="per-domain eval loss (nats/token) and perplexity, before and after")
    for column in ("domain", "loss before", "loss after", "change", "ppl before", "ppl after"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    rows = list(zip(report["domains"], report["source"]["domains"], report["result"]["domains"], strict=True))
    for name, before, after in rows:
        table.add_row(name, f"{before['loss']:.4f}", f"{after['loss']:.4f}", f"{after['loss'] - before['loss']:+.4f}",
                      f"{before['perplexity']:.3f}", f"{after['perplexity']:.3f}")
    name, before, after = max(rows, key=lambda row: row[2]["loss"] - row[1]["loss"])
    change = after["loss"] - before["loss"]
    table.caption = (f"{'largest rise' if change > 0 else 'every domain improved; least'}: {name} ({change:+.4f}); "
                     f"highest loss after: {max(rows, key=lambda row: row[2]['loss'])[0]}")
    return table


def mixture(record: RunRecord) -> Table | None:
    updates = record.series("mixer")
    if not updates:
        return None
    names = updates[0]["domains"]
    table = Table(title=f"domain weights ({record.plan['mixer']['method']}): start of each stage and end of the run")
    table.add_column("domain")
    initial = [d["weight"] for d in record.plan["data"]["domains"]]
    columns = [("initial", initial)]
    for stage in record.training_stages():
        stage_updates = [u for u in updates if u["stage"] == stage]
        if stage_updates:
            columns.append((f"end of {stage}", stage_updates[-1]["weights"]))
    for title, _ in columns:
        table.add_column(title, justify="right")
    for index, name in enumerate(names):
        table.add_row(name, *(f"{weights[index]:.3f}" for _, weights in columns))
    return table


def pruning(record: RunRecord) -> Table | None:
    steps = [r for r in record.series("train") if "expected_params" in r]
    if not steps:
        return None
    last = steps[-1]
    table = Table(title=f"hard-concrete masks at step {last['step']}: expected versus target")
    for column in ("unit", "expected fraction", "target fraction"):
        table.add_column(column, justify="left" if column == "unit" else "right")
    for kind, expected in last["expected_fraction"].items():
        table.add_row(kind, f"{expected:.4f}", f"{last['target_fraction'][kind]:.4f}")
    table.caption = (f"expected parameters {last['expected_params']:,.0f}; target "
                     f"{record.plan['target']['model_info']['params']:,}")
    return table


def score_text(entry: dict) -> str:
    """A downstream task's value with its standard error (lm-eval has none for some metrics)."""
    return f"{entry['value']:.4f}" + (f" ± {entry['stderr']:.4f}" if entry["stderr"] is not None else "")


def downstream(report: dict) -> Table | None:
    """lm-eval's tasks before and after, each with its metric and shots written out."""
    tasks = (report.get("downstream") or {}).get("tasks")
    if not tasks:
        return None
    table = Table(title=f"downstream tasks (lm-eval {report['downstream']['lm_eval_version']}; value ± standard error)")
    for column in ("task", "metric", "shots", "before", "after", "change", "examples"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for task in tasks:
        table.add_row(task["task"], task["metric"], str(task["num_fewshot"]), score_text(task["source"]),
                      score_text(task["result"]), f"{task['result']['value'] - task['source']['value']:+.4f}",
                      str(task["result"]["samples"]))
    return table


def print_tables(record: RunRecord, console: Console) -> None:
    if record.report is None:
        console.print("no report.json: the evaluate stage has not run (eval.enabled false, or the run stopped "
                      "before it)", markup=False)
    measured = () if record.report is None else (size_and_speed(record.report), per_domain(record.report),
                                                  downstream(record.report))
    for table in (*measured, mixture(record), pruning(record)):
        if table is not None:
            console.print(table)
    for line in mask_size_lines(record.metrics):
        console.print(f"pruning: {line}", markup=False)
    for line in bad_step_lines(record.metrics):
        console.print(f"training step not applied: {line}", markup=False)
