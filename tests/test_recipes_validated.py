"""Recipes validated where users keep them: the pre-commit hooks and the README's CI recipe run `shearc validate`."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .helpers import REPO, tiny_spec, write_spec

HOOKS = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())


def _readme_yaml_blocks() -> list[dict]:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.+?)\n```", (REPO / "README.md").read_text(),
                                                            re.S)]


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("hook", HOOKS, ids=[hook["id"] for hook in HOOKS])
def test_each_hook_passes_a_good_spec_and_fails_a_bad_one_with_exit_2(hook, models):
    assert {"id", "name", "entry", "language", "files"} <= set(hook)
    files, exclude = re.compile(hook["files"]), re.compile(hook["exclude"])
    assert files.search("specs/tiny_drpruning.yaml") and files.search("recipes/specs/mine.yml")
    assert not files.search("docs/spec.md") and exclude.search("specs/tiny/model/config.yaml")
    (models / "specs").mkdir()
    good = write_spec(models / "specs", tiny_spec(str(models / "llama-mha")), "good.yaml")
    bad = write_spec(models / "specs", tiny_spec(str(models / "llama-mha"), target={"heads": 99}), "bad.yaml")
    entry = shlex.split(hook["entry"])
    assert _run([*entry, str(good)], models).returncode == 0
    failed = _run([*entry, str(good), str(bad)], models)
    assert failed.returncode == 2 and "bad.yaml" in failed.stderr and "target.heads" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_the_readme_pre_commit_config_is_a_hook_shearc_defines():
    (config,) = [block for block in _readme_yaml_blocks() if isinstance(block, dict) and "repos" in block]
    (local,) = config["repos"][0]["hooks"]
    defined = {hook["id"]: hook for hook in HOOKS}
    assert local["id"] in defined
    assert {key: local[key] for key in ("entry", "files", "exclude")} == {
        key: defined["shearc-validate-system"][key] for key in ("entry", "files", "exclude")}


def test_the_readme_ci_recipe_validates_every_seed_spec(tmp_path):
    """On a copy of the seed specs, after `shearc corpus` (the embedded default's task is generated with its data,
    as the README's first command does)."""
    (workflow,) = [block for block in _readme_yaml_blocks() if isinstance(block, dict) and "jobs" in block]
    command = workflow["jobs"]["validate"]["steps"][-1]["run"]
    assert command.startswith("shearc validate")
    shutil.copytree(REPO / "specs", tmp_path / "specs", ignore=shutil.ignore_patterns("data"))
    assert _run(["shearc", "corpus", "specs/tiny/data"], tmp_path).returncode == 0
    result = _run(["bash", "-c", command], tmp_path)
    assert result.returncode == 0, result.stderr
    validated = re.findall(r"^ok: (\S+)", result.stdout, re.M)
    assert sorted(validated) == sorted(str(p.relative_to(REPO)) for p in (REPO / "specs").glob("*.yaml"))
