"""`shearc report RUN_DIR`: tables from a real tiny run, PNG plots, clear errors on what is not a run."""

import pytest

from shearc.cli import main

from ..helpers import tiny_project

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STAGE = {"global_batch": 4, "seq_len": 16, "lr": 3e-3, "warmup_steps": 1, "eval_interval": 3}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    plan_path = tiny_project(root, "mistral-gqa", {
        "target": {"heads": 4, "kv_heads": 1, "intermediate": 96},
        "prune": {"method": "hard-concrete", "steps": 6, **STAGE},
        "mixer": {"method": "drpruning", "reference": "source"},
        "recovery": {"method": "full", "steps": 6, **STAGE},
        "eval": {"sequences_per_domain": 4, "seq_len": 16}, "export": {"dtype": "float32"}})
    assert main(["run", str(plan_path)]) == 0
    return root / "runs" / "tiny"


def test_report_prints_before_and_after_per_domain_and_draws_every_plot(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    for heading in ("size and speed", "per-domain eval loss", "domain weights (drpruning)", "hard-concrete masks"):
        assert heading in out
    assert "loss before" in out and "ppl after" in out
    table_rows = [line for line in out.splitlines() if line.strip("│ ").startswith(("a ", "b "))]
    assert len(table_rows) >= 4  # both domains in the per-domain and the weights tables
    for name in ("domain_weights", "eval_loss", "drpruning_references", "pruning_size", "perplexity"):
        png = run_dir / "report" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000, name


def test_a_stopped_run_is_reported_as_far_as_it_got(run_dir, tmp_path, capsys):
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "plan.json").write_bytes((run_dir / "plan.json").read_bytes())
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    prune_only = [line for line in lines if '"stage": "recover"' not in line and '"event": "evaluate"' not in line]
    (stopped / "metrics.jsonl").write_text("\n".join(prune_only) + '\n{"event": "tra')  # killed mid-write
    assert main(["report", str(stopped), "--out", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "no report.json" in out and "hard-concrete masks" in out
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "domain_weights.png", "drpruning_references.png", "eval_loss.png", "pruning_size.png"]


def test_plots_into_a_file_exit_2(run_dir, tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    assert main(["report", str(run_dir), "--out", str(tmp_path / "taken")]) == 2
    assert "not a folder" in capsys.readouterr().err and (tmp_path / "taken").read_text() == "mine"


def test_what_is_not_a_run_directory_exits_2_naming_what_is_missing(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no metrics.jsonl" in err and "no plan.json" in err and "Traceback" not in err


def test_a_corrupt_metrics_line_in_the_middle_is_an_error_with_its_line(run_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "plan.json").write_bytes((run_dir / "plan.json").read_bytes())
    (broken / "metrics.jsonl").write_text('{"event": "stage"}\nnot json\n{"event": "stage"}\n')
    assert main(["report", str(broken)]) == 2
    assert "metrics.jsonl:2" in capsys.readouterr().err
