"""`shearc compare RUN_DIR...`: two real tiny runs side by side, the best value of each column marked."""

import csv
import json
import shutil

import pytest

from shearc.cli import main

from ..helpers import tiny_project

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECOVERY = {"steps": 4, "global_batch": 4, "seq_len": 16, "lr": 3e-3, "warmup_steps": 1, "eval_interval": 2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A magnitude + LM-loss run and an activation + distillation run of the same tiny model and data."""
    made = []
    for name, prune, recovery in (("lm", {"method": "magnitude"}, {"method": "full"}),
                                  ("distill", {"method": "activation", "calibration_samples": 4,
                                               "calibration_seq_len": 16}, {"method": "distill"})):
        root = tmp_path_factory.mktemp(name)
        plan_path = tiny_project(root, "mistral-gqa", {
            "target": {"heads": 4, "kv_heads": 1, "intermediate": 96}, "prune": prune,
            "recovery": {**RECOVERY, **recovery}, "eval": {"sequences_per_domain": 4, "seq_len": 16},
            "export": {"dtype": "float32"}})
        assert main(["run", str(plan_path), "--out", str(root / name)]) == 0
        made.append(root / name)
    return made


def _mean(run_dir):
    losses = [d["loss"] for d in json.loads((run_dir / "report.json").read_text())["result"]["domains"]]
    return sum(losses) / len(losses)


def test_compare_prints_writes_and_marks_the_best(runs, tmp_path, capsys):
    table, markdown, plots = tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "plots"
    assert main(["compare", *map(str, runs), "--csv", str(table), "--markdown", str(markdown),
                 "--out", str(plots)]) == 0
    out = capsys.readouterr().out
    for needle in ("source", "lm", "distill", "magnitude", "activation", "distill (full)", "mean loss",
                   "worst-domain loss", "worst rise", "loss a", "loss b", "training tokens", "tokens/s"):
        assert needle in out, needle
    rows = {row["run"]: row for row in csv.DictReader(table.open())}
    assert set(rows) == {"source", "lm", "distill"}  # one source: it comes first, as the reference
    assert rows["source"]["best in"] == "" and rows["source"]["training tokens"] == ""
    assert float(rows["source"]["parameters"]) > float(rows["lm"]["parameters"])
    winner = min(runs, key=_mean).name
    assert "mean loss" in rows[winner]["best in"].split("; ")
    assert "mean loss" not in rows[({"lm", "distill"} - {winner}).pop()]["best in"]
    assert float(rows[winner]["mean loss"]) == pytest.approx(_mean(runs[0] if winner == "lm" else runs[1]))
    assert int(rows["lm"]["training tokens"]) == 4 * 4 * 16
    lines = markdown.read_text().splitlines()
    assert lines[0].startswith("| run | prune | mixer | recovery |")
    assert f"**{min(_mean(r) for r in runs):.3f}**" in next(line for line in lines if line.startswith(f"| {winner} "))
    for name in ("compare_per_domain_loss", "compare_loss_against_tokens"):
        png = plots / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000, name


def test_a_run_without_a_report_still_compares_on_what_it_has(runs, tmp_path, capsys):
    stopped = tmp_path / "stopped"
    shutil.copytree(runs[0], stopped)
    (stopped / "report.json").unlink()
    assert main(["compare", str(runs[1]), str(stopped)]) == 0
    out = capsys.readouterr().out
    assert "stopped" in out and "mean loss" in out


def test_bad_outputs_and_non_runs_exit_2(runs, tmp_path, capsys):
    assert main(["compare", str(runs[0]), "--csv", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["compare", str(runs[0]), str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def _record(path, report=None):
    from shearc.report.records import RunRecord

    return RunRecord(run_dir=path, plan={}, metrics=[], report=report)


def test_runs_are_named_by_the_folders_that_tell_them_apart(tmp_path):
    from shearc.report.compare import run_names

    bench = [tmp_path / "bench" / seed / cell / "run" for seed in ("seed0", "seed1") for cell in ("taylor", "lora")]
    assert run_names([_record(p) for p in bench[:2]]) == ["taylor", "lora"]  # the shared trailing `run` dropped
    assert run_names([_record(p) for p in bench]) == ["seed0/taylor", "seed0/lora", "seed1/taylor", "seed1/lora"]
    assert run_names([_record(tmp_path / "a" / "x"), _record(tmp_path / "b" / "y")]) == ["x", "y"]
    assert run_names([_record(tmp_path / "only" / "run")]) == ["run"]


def test_the_source_row_takes_the_median_of_what_the_runs_measured(tmp_path):
    from shearc.report.compare import source_row

    def report(latency):
        model = {"params": 100, "latency_ms": latency, "tokens_per_second": 1000 / latency,
                 "domains": [{"loss": 1.5}]}
        return {"domains": ["a"], "source": model, "result": model}

    row = source_row([_record(tmp_path / str(n), report(ms)) for n, ms in enumerate((10.0, 90.0, 12.0))])
    assert row["latency (ms)"] == 12.0 and row["parameters"] == 100 and isinstance(row["parameters"], int)
    assert row["loss a"] == 1.5 and row["tokens/s"] == pytest.approx(1000 / 12)  # one busy run does not decide


def test_many_runs_are_printed_in_as_many_tables_as_the_width_needs(runs, capsys):
    from rich.console import Console

    from shearc.report.compare import columns_of, rich_tables, row_of
    from shearc.report.records import read_run

    records = [read_run(run) for run in runs]
    rows = [row_of(record, f"a-long-name-for-run-{n}-of-several") for n in range(6) for record in records]
    columns = columns_of(rows, records)
    tables = rich_tables(rows, columns, width=120)
    assert len(tables) > 1 and sum(len(t.columns) - 1 for t in tables) == len(rows)  # every run once
    console = Console(width=120, record=True)
    for table in tables:
        console.print(table)
    text = console.export_text()
    assert all(row["run"] in text for row in rows) and "…" not in text  # names and values whole
    assert len(rich_tables(rows, columns, width=10_000)) == 1


def test_runs_that_scored_different_examples_of_a_task_get_their_own_columns(tmp_path):
    from shearc.report.compare import columns_of, source_row

    def report(samples):
        scored = {"value": 0.5, "stderr": 0.05, "samples": samples}
        model = {"params": 100, "latency_ms": 1.0, "tokens_per_second": 1.0, "domains": [{"loss": 1.0}]}
        return {"domains": ["a"], "source": model, "result": model, "downstream": {"tasks": [
            {"task": "hellaswag", "metric": "acc_norm,none", "num_fewshot": 10, "source": scored, "result": scored}]}}

    records = [_record(tmp_path / "a", report(100)), _record(tmp_path / "b", report(10_042))]
    rows = [source_row([record]) for record in records]
    titles = [c.title for c in columns_of(rows, records) if c.title.startswith("hellaswag")]
    assert titles == ["hellaswag acc_norm (10-shot, 100 examples)", "hellaswag acc_norm (10-shot, 10,042 examples)"]
