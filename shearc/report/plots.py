"""The report's PNG plots, drawn with matplotlib's object API (no pyplot state, no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from shearc.canonical import write_bytes_atomic

from .records import RunRecord


def save_figure(figure: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _mark_stages(axes, record: RunRecord) -> None:
    for stage, offset in record.stage_offsets.items():
        axes.axvline(offset, color="grey", linestyle=":", linewidth=1)
        axes.annotate(stage, (offset, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                      textcoords="offset points", color="grey", fontsize=8)


def _per_domain_lines(record: RunRecord, field: str, ylabel: str, title: str, path: Path) -> Path | None:
    updates = record.series("mixer")
    if not updates:
        return None
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    steps = [record.global_step(u) for u in updates]
    values = np.array([u[field] for u in updates])
    for index, name in enumerate(updates[0]["domains"]):
        axes.plot(steps, values[:, index], marker=".", label=name)
    _mark_stages(axes, record)
    axes.set(xlabel="step (all training stages)", ylabel=ylabel, title=title)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: lines fill the axes
    return save_figure(figure, path)


def domain_weights(record: RunRecord, out: Path) -> Path | None:
    return _per_domain_lines(record, "weights", "sampling weight",
                             f"domain weights over steps ({record.plan['mixer']['method']})",
                             out / "domain_weights.png")


def eval_loss(record: RunRecord, out: Path) -> Path | None:
    updates = record.series("mixer")
    field = "eval_losses" if updates and "eval_losses" in updates[0] else "losses"  # runs before eval_losses
    return _per_domain_lines(record, field, "eval loss (nats/token)", "per-domain eval loss over steps",
                             out / "eval_loss.png")


def drpruning_references(record: RunRecord, out: Path) -> Path | None:
    """DRPruning's moving targets: per-domain reference losses (static until a stage's first scaling-law fit)
    and the reference ratio p_R around which the worst case is sought."""
    updates = record.series("mixer")
    if not updates or "reference_ratio" not in updates[0]:
        return None
    figure = Figure(figsize=(12, 4.5))
    losses, ratio = figure.subplots(1, 2)
    steps = [record.global_step(u) for u in updates]
    for axes, field, ylabel in ((losses, "reference_losses", "reference loss L_ref (nats/token)"),
                                (ratio, "reference_ratio", "reference ratio p_R")):
        values = np.array([u[field] for u in updates])
        for index, name in enumerate(updates[0]["domains"]):
            axes.plot(steps, values[:, index], marker=".", label=name)
        _mark_stages(axes, record)
        axes.set(xlabel="step (all training stages)", ylabel=ylabel)
    losses.set_title("reference losses over steps")
    ratio.set_title("reference ratio over steps")
    ratio.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(figure, out / "drpruning_references.png")


def pruning_size(record: RunRecord, out: Path) -> Path | None:
    steps = [r for r in record.series("train") if "expected_params" in r]
    if not steps:
        return None
    figure = Figure(figsize=(11, 4.5))
    size, fractions = figure.subplots(1, 2)
    x = [r["step"] for r in steps]
    size.plot(x, [r["expected_params"] for r in steps], label="expected (masks)")
    size.axhline(record.plan["target"]["model_info"]["params"], color="black", linestyle="--", label="target")
    size.axhline(record.plan["source"]["model_info"]["params"], color="grey", linestyle=":", label="source")
    size.set(xlabel="pruning step", ylabel="parameters", title="expected versus target size")
    size.legend(fontsize=8)
    for kind in steps[0]["expected_fraction"]:
        line, = fractions.plot(x, [r["expected_fraction"][kind] for r in steps], label=f"{kind} expected")
        fractions.plot(x, [r["target_fraction"][kind] for r in steps], linestyle="--", color=line.get_color(),
                       label=f"{kind} target")
    fractions.set(xlabel="pruning step", ylabel="fraction kept", title="per unit kind")
    fractions.legend(fontsize=7, ncols=2)
    return save_figure(figure, out / "pruning_size.png")


def perplexity(record: RunRecord, out: Path) -> Path | None:
    if record.report is None:
        return None
    names = record.report["domains"]
    before = [d["perplexity"] for d in record.report["source"]["domains"]]
    after = [d["perplexity"] for d in record.report["result"]["domains"]]
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    positions = np.arange(len(names))
    axes.bar(positions - 0.2, before, width=0.4, label=f"source ({record.report['source']['params']:,} params)")
    axes.bar(positions + 0.2, after, width=0.4, label=f"result ({record.report['result']['params']:,} params)")
    axes.set_xticks(positions, names)
    axes.set(ylabel="perplexity", title="per-domain perplexity before and after")
    axes.legend(fontsize=8)
    return save_figure(figure, out / "perplexity.png")


def downstream_tasks(record: RunRecord, out: Path) -> Path | None:
    """Each lm-eval task's metric before and after, with its standard error as an error bar."""
    tasks = ((record.report or {}).get("downstream") or {}).get("tasks")
    if not tasks:
        return None
    figure = Figure(figsize=(max(6, 1.4 * len(tasks)), 4.5))
    axes = figure.subplots()
    positions = np.arange(len(tasks))
    for offset, which in ((-0.2, "source"), (0.2, "result")):
        axes.bar(positions + offset, [t[which]["value"] for t in tasks], width=0.4, label=which,
                 yerr=[t[which]["stderr"] or 0.0 for t in tasks], capsize=3)
    axes.set_xticks(positions, [f"{t['task']}\n{t['metric'].removesuffix(',none')}, {t['num_fewshot']}-shot"
                                for t in tasks], fontsize=8)
    axes.set(ylabel="metric value", title="downstream tasks before and after (lm-eval)")
    axes.legend(fontsize=8)
    return save_figure(figure, out / "downstream.png")


def write_plots(record: RunRecord, out: Path) -> list[Path]:
    drawn = (domain_weights(record, out), eval_loss(record, out), drpruning_references(record, out),
             pruning_size(record, out), perplexity(record, out), downstream_tasks(record, out))
    return [path for path in drawn if path is not None]
