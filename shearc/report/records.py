"""A finished (or stopped) run directory read back: its plan, metrics.jsonl and report.json."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shearc.errors import Problem, UserError


@dataclass
class RunRecord:
    run_dir: Path
    plan: dict[str, Any]
    metrics: list[dict[str, Any]]
    report: dict[str, Any] | None  # report.json of the evaluate stage; None when it did not run
    stage_offsets: dict[str, int] = field(default_factory=dict)  # global step where each training stage starts

    def events(self, event: str) -> list[dict[str, Any]]:
        return [record for record in self.metrics if record["event"] == event]

    def series(self, event: str) -> list[dict[str, Any]]:
        """Records of a per-step event in step order; after a resume the re-run step's record wins."""
        latest = {(r["stage"], r["step"]): r for r in self.events(event)}
        return sorted(latest.values(), key=self.global_step)

    def global_step(self, record: dict[str, Any]) -> int:
        return self.stage_offsets.get(record["stage"], 0) + record["step"]

    def training_stages(self) -> list[str]:
        return [s["stage"] for s in self.plan["stages"] if "steps" in s.get("params", {})]


def read_run(run_dir: Path) -> RunRecord:
    problems = []
    metrics_path = run_dir / "metrics.jsonl"
    if not run_dir.is_dir():
        raise UserError([Problem("no such run directory", file=str(run_dir))], title="cannot report")
    if not metrics_path.is_file():
        problems.append(Problem("no metrics.jsonl: not a shearc run directory, or the run has not started",
                                file=str(run_dir)))
    plan_path = run_dir / "plan.json"  # written by `shearc run` when it starts
    if not plan_path.is_file():
        problems.append(Problem("no plan.json: not a shearc run directory", file=str(run_dir)))
    if problems:
        raise UserError(problems, title="cannot report")
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    metrics, lines = [], metrics_path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            metrics.append(json.loads(line))
        except json.JSONDecodeError:  # the last line cut short by a killed run: the rest is still worth showing
            if number != len(lines):
                raise UserError([Problem("not JSON", file=str(metrics_path), line=number)],
                                title="cannot report") from None
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else None
    record = RunRecord(run_dir=run_dir, plan=plan, metrics=metrics, report=report)
    offset = 0
    for stage in record.training_stages():
        record.stage_offsets[stage] = offset
        offset += next(s for s in plan["stages"] if s["stage"] == stage)["params"]["steps"]
    return record
