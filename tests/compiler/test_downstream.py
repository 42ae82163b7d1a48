"""eval.lm_eval at compile time: presets expanded with their metrics, local tasks found, missing data refused."""

import json

import pytest

from shearc.cli import main
from shearc.corpus.tasks import write_task
from shearc.sections import PRESETS

from ..helpers import tiny_spec, write_spec


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """No dataset is cached here, whatever this machine holds."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path


def _compile(models, lm_eval, capsys):
    spec = tiny_spec("llama-mha", eval={"lm_eval": lm_eval})
    code = main(["compile", str(write_spec(models, spec)), "-o", str(models / "plan.json")])
    return code, capsys.readouterr()


def test_a_local_task_is_found_relative_to_its_yaml(models, capsys):
    write_task(models / "evals", count=4)
    code, _ = _compile(models, {"tasks": [{"path": "evals/tasks/arithmetic_choice.yaml", "metric": "acc_norm"}]},
                       capsys)
    assert code == 0
    plan = json.loads((models / "plan.json").read_text())
    (evaluate,) = [s for s in plan["stages"] if s["stage"] == "evaluate"]
    assert evaluate["downstream"] == [{"task": "shearc_arithmetic_choice", "metric": "acc_norm,none", "num_fewshot": 0,
                                       "path": "evals/tasks/arithmetic_choice.yaml",
                                       "data": ["evals/tasks/arithmetic_choice.jsonl"]}]


def test_a_local_task_without_its_data_exits_2_naming_the_task_and_the_file(models, capsys):
    write_task(models / "evals", count=4)
    (models / "evals" / "tasks" / "arithmetic_choice.jsonl").unlink()
    code, captured = _compile(models, {"tasks": [{"path": "evals/tasks/arithmetic_choice.yaml", "metric": "acc"}]},
                              capsys)
    assert code == 2 and not (models / "plan.json").exists()
    assert "eval.lm_eval.tasks[0]: task shearc_arithmetic_choice: its data file arithmetic_choice.jsonl is not " \
           "there" in captured.err and "Traceback" not in captured.err


def test_a_task_must_name_its_metric_and_exactly_one_source(models, capsys):
    code, captured = _compile(models, {"tasks": [{"task": "hellaswag"}]}, capsys)
    assert code == 2 and "metric" in captured.err
    code, captured = _compile(models, {"tasks": [{"task": "hellaswag", "path": "x.yaml", "metric": "acc"}]}, capsys)
    assert code == 2 and "exactly one of task" in captured.err


def test_a_preset_names_each_papers_metric():
    assert dict((t, m) for t, m, _ in PRESETS["llm-pruner"])["hellaswag"] == "acc_norm"  # the paper's 68.48, not 53.19
    assert {t: (m, s) for t, m, s in PRESETS["minitron"]}["gsm8k"] == ("exact_match,strict-match", 5)
    assert all(shots >= 0 and metric for suite in PRESETS.values() for _, metric, shots in suite)


def test_a_preset_whose_data_is_not_cached_exits_2_naming_each_task_and_where_it_looked(models, empty_hf_cache,
                                                                                          capsys):
    code, captured = _compile(models, {"preset": "minitron"}, capsys)
    assert code == 2 and not (models / "plan.json").exists()
    for task, _, _ in PRESETS["minitron"]:
        assert f"task {task}: its data" in captured.err, task
    assert str(empty_hf_cache / "datasets-cache") in captured.err and "nothing is downloaded" in captured.err


def test_without_lm_eval_a_named_task_is_refused_with_the_install_command(models, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_lm_eval(name, *args, **kwargs):
        if name.startswith("lm_eval"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lm_eval)
    code, captured = _compile(models, {"tasks": [{"task": "piqa", "metric": "acc"}]}, capsys)
    assert code == 2 and 'pip install -e ".[eval]"' in captured.err


def test_data_files_keep_their_shape_when_made_absolute():
    from shearc.compiler.downstream import data_files_of, map_data_files

    config = {"task": "t", "dataset_kwargs": {"data_files": {"test": "a.jsonl", "train": ["b.jsonl", "c.jsonl"]},
                                              "field": "rows"}}
    moved = map_data_files(config, lambda file: f"/data/{file}")
    assert moved["dataset_kwargs"] == {"data_files": {"test": "/data/a.jsonl",
                                                      "train": ["/data/b.jsonl", "/data/c.jsonl"]}, "field": "rows"}
    assert config["dataset_kwargs"]["data_files"]["test"] == "a.jsonl"  # the original is left alone
    assert data_files_of(config) == ["a.jsonl", "b.jsonl", "c.jsonl"]
    assert data_files_of({"dataset_kwargs": {"data_files": "x.csv"}}) == ["x.csv"]
    assert data_files_of({"task": "t"}) == [] and map_data_files({"task": "t"}, str.upper) == {"task": "t"}
