"""`shearc compare RUN_DIR...`: several runs in one table, the best value of each column marked.

    shearc compare runs/a runs/b runs/c [--csv table.csv] [--markdown table.md] [--out plots/]

One row per run: what it did (prune method, mixer, recovery), what it spent (training tokens, wall
time), what it made (parameters, latency and tokens/s of its forward), and how good it is (each
domain's eval loss, the mean, the worst domain and the largest rise over the source, and any
downstream task the run evaluated). Runs are named by the folders that tell them apart. When every
run pruned the same source, the source comes first as the reference (the median of what the runs
measured of it; it competes for no column). Plots: each run's per-domain loss side by side, and
training LM loss against tokens seen.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from shearc.canonical import write_text_atomic

from .plots import save_figure
from .records import RunRecord


@dataclass(frozen=True)
class Column:
    title: str
    better: str | None  # "lower", "higher", or None (not ranked)
    digits: int | None = None  # decimals; None: an integer with thousands separators, or text
    signed: bool = False  # a change: written with its sign


def stage_tokens(plan: dict[str, Any]) -> int:
    """Tokens the run trained on: every training stage's steps x global batch x sequence length."""
    return sum(s["params"]["steps"] * s["params"]["global_batch"] * s["params"]["seq_len"]
               for s in plan["stages"] if "steps" in s.get("params", {}))


def _stage_params(plan: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((s.get("params", {}) for s in plan["stages"] if s["stage"] == name), None)


def _recovery(plan: dict[str, Any]) -> str:
    recovery = _stage_params(plan, "recover")
    if recovery is None:
        return "none"
    method = recovery["method"]
    return f"{method} ({recovery['student']})" if method == "distill" else method


def run_names(records: list[RunRecord]) -> list[str]:
    """Each run's shortest name that tells it from the others: the last folders of its path, without the
    trailing ones every run shares (runs/x/seed0/taylor/run and runs/x/seed0/magnitude/run: taylor, magnitude)."""
    parts = [record.run_dir.resolve().parts for record in records]
    shared = 0
    while len(parts) > 1 and all(len(p) > shared + 1 for p in parts) and len({p[-1 - shared] for p in parts}) == 1:
        shared += 1
    trimmed = [p[:len(p) - shared] for p in parts]
    names = []
    for own in trimmed:
        depth = 1
        while depth < len(own) and sum(other[-depth:] == own[-depth:] for other in trimmed) > 1:
            depth += 1
        names.append("/".join(own[-depth:]))
    return names


def row_of(record: RunRecord, name: str | None = None) -> dict[str, Any]:
    """The run's values by column title (absent where it has none, e.g. no report.json)."""
    plan = record.plan
    row: dict[str, Any] = {"run": name or record.run_dir.name, "prune": _stage_params(plan, "prune")["method"],
                           "mixer": plan["mixer"]["method"], "recovery": _recovery(plan),
                           "training tokens": stage_tokens(plan),
                           "wall time (s)": sum(r["seconds"] for r in record.events("stage"))}
    report = record.report
    if report is not None:
        row.update(_measured(report, "result"))
        source = [d["loss"] for d in report["source"]["domains"]]
        row["worst rise"] = max(after - before for after, before in
                                zip((d["loss"] for d in report["result"]["domains"]), source, strict=True))
    return row


def source_row(records: list[RunRecord]) -> dict[str, Any]:
    """The source model as the runs measured it, each value the median over the runs (every run times the
    source again, on a machine that may be busy; its losses agree where the eval data does). The reference
    the runs are compared with; never ranked."""
    measured = [_measured(record.report, "source") for record in records if record.report is not None]
    titles = list(dict.fromkeys(title for row in measured for title in row))
    return {"run": "source", "prune": "", "mixer": "", "recovery": "",
            **{title: _median([row[title] for row in measured if title in row]) for title in titles}}


def _median(values: list[Any]) -> Any:
    middle = float(np.median(values))
    return round(middle) if all(isinstance(v, int) for v in values) else middle


def _measured(report: dict[str, Any], which: str) -> dict[str, Any]:
    model = report[which]
    losses = [d["loss"] for d in model["domains"]]
    speed = {"latency (ms)": model["latency_ms"], "tokens/s": model["tokens_per_second"]}
    row = {"parameters": model["params"],
           **{title: value for title, value in speed.items() if value is not None},  # None: fits no one device
           **{f"loss {name}": loss for name, loss in zip(report["domains"], losses, strict=True)},
           "mean loss": sum(losses) / len(losses), "worst-domain loss": max(losses)}
    for task in report.get("downstream", {}).get("tasks", []):
        row[_task_title(task)] = task[which]["value"]
    return row


def _task_title(task: dict[str, Any]) -> str:
    """The task, its metric, shots and examples scored: runs that scored different examples get their own
    columns (a value over 100 questions is not one over all 200)."""
    return (f"{task['task']} {task['metric'].removesuffix(',none')} ({task['num_fewshot']}-shot, "
            f"{task['result']['samples']:,} examples)")


def columns_of(rows: list[dict[str, Any]], records: list[RunRecord]) -> list[Column]:
    """Every column some run has, in a fixed order: what it did, spent, made, then its losses and tasks."""
    domains = list(dict.fromkeys(name for r in records if r.report for name in r.report["domains"]))
    tasks = list(dict.fromkeys(_task_title(t) for r in records if r.report
                               for t in r.report.get("downstream", {}).get("tasks", [])))
    candidates = [Column("run", None), Column("prune", None), Column("mixer", None), Column("recovery", None),
                  Column("training tokens", "lower"), Column("parameters", "lower"),
                  Column("latency (ms)", "lower", 2), Column("tokens/s", "higher", 0),
                  *(Column(f"loss {name}", "lower", 3) for name in domains),
                  Column("mean loss", "lower", 3), Column("worst-domain loss", "lower", 3),
                  Column("worst rise", "lower", 3, signed=True),
                  *(Column(title, "higher", 4) for title in tasks), Column("wall time (s)", "lower", 0)]
    return [c for c in candidates if any(c.title in row for row in rows)]


def best_values(rows: list[dict[str, Any]], columns: list[Column]) -> dict[str, Any]:
    """Per ranked column, the best value among the runs (ties all marked; the source row does not compete)."""
    best = {}
    rows = [row for row in rows if _competes(row)]
    for column in columns:
        values = [row[column.title] for row in rows if column.title in row]
        if column.better and values and len(rows) > 1:
            best[column.title] = min(values) if column.better == "lower" else max(values)
    return best


def _text(value: Any, column: Column) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if column.digits is None:
        return f"{value:,}"
    return f"{value:{'+' if column.signed else ''},.{column.digits}f}"


def _is_best(value: Any, column: Column, best: dict[str, Any], row: dict[str, Any]) -> bool:
    return (column.title in best and value is not None and _competes(row)
            and math.isclose(value, best[column.title], rel_tol=1e-12))


def _competes(row: dict[str, Any]) -> bool:
    return "training tokens" in row  # a run's row; the source's has none


def markdown(rows: list[dict[str, Any]], columns: list[Column]) -> str:
    """A markdown table, the best value of each ranked column in bold."""
    best = best_values(rows, columns)
    lines = ["| " + " | ".join(c.title for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column.title)
            text = _text(value, column)
            cells.append(f"**{text}**" if _is_best(value, column, best, row) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]], columns: list[Column]) -> str:
    """Plain values (full precision), one row per run, and one column per run saying which columns it wins."""
    best = best_values(rows, columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([c.title for c in columns] + ["best in"])
    for row in rows:
        wins = [c.title for c in columns if _is_best(row.get(c.title), c, best, row)]
        writer.writerow([row.get(c.title, "") for c in columns] + ["; ".join(wins)])
    return buffer.getvalue()


def rich_tables(rows: list[dict[str, Any]], columns: list[Column], width: int) -> list[Table]:
    """On the terminal, one column per run and one row per quantity (a dozen domains and tasks would not fit
    across), the best of each row marked (bold, and * for plain text); as many tables, each repeating the
    quantities, as it takes to show every run's name and values whole in `width` characters."""
    best = best_values(rows, columns)
    cells = [[f"{_text(row.get(c.title), c)} *" if _is_best(row.get(c.title), c, best, row)
              else _text(row.get(c.title), c) for c in columns[1:]] for row in rows]
    label = max(len(c.title) for c in columns[1:]) + 4
    widths = [max(len(row["run"]), *(len(cell) for cell in own)) + 3 for row, own in zip(rows, cells, strict=True)]
    chunks, start = [], 0
    while start < len(rows):
        end, used = start + 1, label + widths[start]
        while end < len(rows) and used + widths[end] <= width:
            used += widths[end]
            end += 1
        chunks.append(range(start, end))
        start = end
    tables = []
    for chunk in chunks:
        which = f"{len(rows)} runs" if len(chunks) == 1 else f"runs {chunk[0] + 1}-{chunk[-1] + 1} of {len(rows)}"
        table = Table(title=f"{which}; * marks the best of each row (the lowest, but for tokens/s and tasks)")
        table.add_column("", no_wrap=True)
        for index in chunk:
            table.add_column(rows[index]["run"], justify="right", no_wrap=True)
        for number, column in enumerate(columns[1:]):
            table.add_row(column.title, *(f"[bold]{cells[i][number]}[/bold]" if cells[i][number].endswith(" *")
                                          else cells[i][number] for i in chunk))
        tables.append(table)
    return tables


def per_domain_plot(records: list[RunRecord], names: list[str], out: Path) -> Path | None:
    reported = [(r, name) for r, name in zip(records, names, strict=True) if r.report is not None]
    if not reported:
        return None
    domains = list(dict.fromkeys(domain for r, _ in reported for domain in r.report["domains"]))
    figure = Figure(figsize=(min(20, max(8, 1.2 * len(domains) * max(1, len(reported)) / 3)), 4.5))
    axes = figure.subplots()
    axes.set_prop_cycle(color=_colors(len(reported)))
    width = 0.8 / len(reported)
    positions = np.arange(len(domains))
    for index, (record, name) in enumerate(reported):
        losses = dict(zip(record.report["domains"], (d["loss"] for d in record.report["result"]["domains"]),
                          strict=True))
        axes.bar(positions + (index - (len(reported) - 1) / 2) * width, [losses.get(d, np.nan) for d in domains],
                 width=width, label=name)
    if len({r.plan["source"]["fingerprint"] for r, _ in reported}) == 1:  # one source: its loss as a reference
        source = dict(zip(reported[0][0].report["domains"],
                          (d["loss"] for d in reported[0][0].report["source"]["domains"]), strict=True))
        axes.hlines([source.get(d, np.nan) for d in domains], positions - 0.45, positions + 0.45, colors="black",
                    linewidth=1.5, label="source")
    axes.set_xticks(positions, domains)
    axes.set(ylabel="eval loss (nats/token)", title="per-domain eval loss of each run's result")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(figure, out / "compare_per_domain_loss.png")


def loss_against_tokens(records: list[RunRecord], names: list[str], out: Path) -> Path | None:
    """Training loss against the tokens each run had trained on by then (all training stages in order)."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    axes.set_prop_cycle(color=_colors(len(records)))
    drawn = False
    for record, name in zip(records, names, strict=True):
        per_step = {s["stage"]: s["params"]["global_batch"] * s["params"]["seq_len"]
                    for s in record.plan["stages"] if "steps" in s.get("params", {})}
        before, seen, points = {}, 0, []
        for stage in record.training_stages():
            before[stage] = seen
            seen += _stage_params(record.plan, stage)["steps"] * per_step[stage]
        for step in record.series("train"):
            # a distillation step's loss is its KL to the teacher; its LM loss is logged beside it
            points.append((before[step["stage"]] + step["step"] * per_step[step["stage"]],
                           step.get("lm_loss", step["loss"])))
        if points:
            axes.plot(*zip(*points, strict=True), linewidth=1, label=name)
            drawn = True
    if not drawn:
        return None
    axes.set(xlabel="training tokens", ylabel="training LM loss (nats/token)",
             title="training LM loss against tokens (distillation runs: the student's LM loss)")
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(figure, out / "compare_loss_against_tokens.png")


def _colors(count: int) -> list[Any]:
    """Distinct colours for `count` runs (matplotlib's default ten repeat from the eleventh)."""
    from matplotlib import colormaps

    return list(colormaps["tab10" if count <= 10 else "tab20"].colors)


def compare_runs(records: list[RunRecord], console: Console, *, csv_path: Path | None = None,
                 markdown_path: Path | None = None, plots: Path | None = None) -> list[Path]:
    """Print the table; write what was asked for; return the files written."""
    names = run_names(records)
    rows = [row_of(record, name) for record, name in zip(records, names, strict=True)]
    sources = {r.plan["source"]["fingerprint"] for r in records}
    if len(sources) == 1 and any(r.report is not None for r in records):  # one source: first, as the reference
        rows.insert(0, source_row(records))
    columns = columns_of(rows, records)
    for table in rich_tables(rows, columns, console.width):
        console.print(table)
    written = []
    if csv_path is not None:
        write_text_atomic(csv_path, csv_text(rows, columns))
        written.append(csv_path)
    if markdown_path is not None:
        write_text_atomic(markdown_path, markdown(rows, columns))
        written.append(markdown_path)
    if plots is not None:
        written += [p for p in (per_domain_plot(records, names, plots), loss_against_tokens(records, names, plots))
                    if p]
    return written

