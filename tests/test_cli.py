"""The CLI's public surface is pinned: commands, their flags, exit codes, and the README's commands."""

import re

import click

from shearc.cli import cli, main

from .helpers import REPO

PINNED = {
    "validate": {"specs"},
    "compile": {"spec", "output"},
    "explain": {"plan"},
    "schema": {"check", "directory"},
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
    main_command = next(c for c in commands if "shearc compile" in c)
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert "specs/drpruning_1.3b.yaml" in main_command and "shearc explain plan.json" in main_command
