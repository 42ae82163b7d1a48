"""The CLI's public surface is pinned: commands, their flags, exit codes, and the README's commands."""

import re

import click

from shearc.cli import cli, main

from .helpers import REPO

PINNED = {
    "validate": {"specs"},
    "compile": {"spec", "output"},
    "explain": {"plan"},
    "data": {"path"},
    "run": {"plan", "out", "finalize_tolerance"},
    "schema": {"check", "directory"},
    "corpus": {"out", "train_documents", "eval_documents", "seed"},
    "report": {"run_dir", "out"},
    "compare": {"run_dirs", "csv_path", "markdown_path", "out"},
}


def test_commands_and_flags_are_pinned():
    ctx = click.Context(cli)
    assert set(cli.list_commands(ctx)) == set(PINNED)
    for name, params in PINNED.items():
        command = cli.get_command(ctx, name)
        assert {p.name for p in command.params if p.name != "help"} == params, name


def test_usage_errors_exit_2(capsys):
    assert main(["compile"]) == 2
    assert main(["frobnicate"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_version_and_help_exit_0(capsys):
    assert main(["--version"]) == 0
    assert main(["--help"]) == 0
    assert "compile" in capsys.readouterr().out


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)
    test_command = next(c for c in commands if "pytest" in c)
    main_command = next(c for c in commands if "shearc run" in c)
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    for step in ("shearc corpus specs/tiny/data", "shearc compile specs/tiny_drpruning.yaml -o plan.json",
                 "shearc run plan.json", "shearc report runs/tiny-drpruning"):
        assert step in main_command
    assert '-e ".[eval]"' in main_command  # the default scores a downstream task through lm-eval


def test_validate_reports_each_spec(models, capsys):
    from .helpers import tiny_spec, write_spec

    good = write_spec(models, tiny_spec("llama-mha"), "good.yaml")
    bad = write_spec(models, tiny_spec("llama-mha", target={"heads": 99}), "bad.yaml")
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"ok: {good}" in captured.out
    assert f"{bad}:" in captured.err and "target.heads" in captured.err and "1 of 2 specs invalid" in captured.err


def test_user_text_is_printed_literally(models, capsys):
    from .helpers import tiny_spec, write_spec

    spec = tiny_spec("llama-mha", description="keeps [bold]brackets[/bold] as written")
    assert main(["compile", str(write_spec(models, spec)), "-o", str(models / "plan.json")]) == 0
    assert main(["explain", str(models / "plan.json")]) == 0
    assert "keeps [bold]brackets[/bold] as written" in capsys.readouterr().out


def test_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("shearc.compiler.compile.compile_spec", interrupted)
    assert main(["compile", "whatever.yaml"]) == 130
    assert "interrupted" in capsys.readouterr().err
