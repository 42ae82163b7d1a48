"""Resolve `eval.lm_eval` into the plan's downstream tasks, and find each task's data without downloading.

A local task YAML (`path:`) reads its data from files given relative to the YAML (`dataset_kwargs:
data_files:`, for the json, csv, parquet and text builders) or from a local dataset folder; a task
lm-eval knows by name reads a Hugging Face dataset, which must already be in the local cache
(datasets' own, or the hub's). A task whose data is in neither place is refused here, naming the
task and where its data was looked for, so that `shearc run` never reaches for the network.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from shearc.errors import Problem
from shearc.sections.downstream import NEEDS_EXTRA, LmEvalSpec, LmEvalTaskSpec

FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow")


def resolve_downstream(spec: LmEvalSpec | None, spec_dir: Path, relocate: Any) -> tuple[list[dict], list[Problem]]:
    """The plan's downstream tasks (paths relative to the plan, via `relocate`), and what stops them."""
    if spec is None:
        return [], []
    tasks, problems, index = [], [], None
    preset_count = len(spec.all_tasks()) - len(spec.tasks)
    for number, task in enumerate(spec.all_tasks()):
        where = "eval.lm_eval.preset" if number < preset_count else f"eval.lm_eval.tasks[{number - preset_count}]"
        if task.path is not None:
            resolved, found = _local_task(spec_dir / os.path.expanduser(task.path), where, problems)
            name, path = resolved, relocate(task.path)
            data = [relocate(os.path.relpath(f, spec_dir)) for f in found]
        else:
            if index is None:
                index = _task_index(where, problems)
                if index is None:
                    return [], problems
            name, path = task.task, None
            data = _registered_task_data(index, task.task, where, problems)
        if name is not None:
            tasks.append({"task": name, "path": path, "metric": _with_filter(task), "num_fewshot": task.num_fewshot,
                          "data": data})
    return tasks, problems


def _with_filter(task: LmEvalTaskSpec) -> str:
    return task.metric if "," in task.metric else f"{task.metric},none"


def load_task_yaml(path: Path) -> dict[str, Any]:
    """A task YAML as data, lm-eval's `!function` tags kept as text (shearc never runs them at compile time)."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix} {node.value}")
    with path.open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=Loader)
    if not isinstance(loaded, dict):
        raise ValueError("not a mapping")
    return loaded


def map_data_files(config: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """The config with every file of `dataset_kwargs.data_files` (a path, a list, or per split) passed through
    `change`, its shape kept."""
    def walk(files: Any) -> Any:
        if isinstance(files, dict):
            return {split: walk(value) for split, value in files.items()}
        if isinstance(files, list):
            return [walk(value) for value in files]
        return change(str(files))

    kwargs = config.get("dataset_kwargs") or {}
    if kwargs.get("data_files") is None:
        return config
    return {**config, "dataset_kwargs": {**kwargs, "data_files": walk(kwargs["data_files"])}}


def data_files_of(config: dict[str, Any]) -> list[str]:
    """The file patterns a file-builder task reads."""
    found: list[str] = []

    def note(file: str) -> str:
        found.append(file)
        return file

    map_data_files(config, note)
    return found


def _local_task(path: Path, where: str, problems: list[Problem]) -> tuple[str | None, list[Path]]:
    if not path.is_file():
        problems.append(Problem(f"no task YAML at {path}", where))
        return None, []
    try:
        config = load_task_yaml(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        problems.append(Problem(f"{path} is not a task YAML: {exc}", where))
        return None, []
    name = config.get("task")
    if not isinstance(name, str):
        problems.append(Problem(f"{path} names no `task`", where))
        return None, []
    if config.get("dataset_path") in FILE_BUILDERS:
        patterns = data_files_of(config)
        if not patterns:
            problems.append(Problem(f"task {name} ({path}) reads dataset_path {config['dataset_path']} but gives no "
                                    "dataset_kwargs.data_files", where))
        found = []
        for pattern in patterns:
            matches = sorted(glob.glob(str(path.parent / pattern)))
            if not matches:
                problems.append(Problem(f"task {name}: its data file {pattern} is not there (looked for "
                                        f"{path.parent / pattern}, relative to the task YAML)", where))
            found += [Path(m) for m in matches]
        return name, found
    folder = path.parent / str(config.get("dataset_path", ""))
    if config.get("dataset_path") and folder.is_dir():
        return name, [folder]
    cached = hub_cache_folders(str(config.get("dataset_path", "")))
    if not any(c.is_dir() for c in cached):
        problems.append(Problem(f"task {name}: its data ({config.get('dataset_path')!r}) is neither local files nor "
                                f"in the local cache (looked in {', '.join(map(str, cached))})", where))
        return name, []
    return name, [c for c in cached if c.is_dir()]


def hub_cache_folders(dataset_path: str) -> list[Path]:
    """Where a Hugging Face dataset would be cached: datasets' own cache, then the hub's."""
    from datasets import config as datasets_config
    from huggingface_hub import constants

    return [Path(datasets_config.HF_DATASETS_CACHE) / dataset_path.replace("/", "___"),
            Path(constants.HF_HUB_CACHE) / f"datasets--{dataset_path.replace('/', '--')}"]


def _task_index(where: str, problems: list[Problem]) -> Any:
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        problems.append(Problem(f"tasks lm-eval knows by name {NEEDS_EXTRA}", where))
        return None
    return TaskManager().task_index


def _registered_task_data(index: dict[str, Any], name: str, where: str, problems: list[Problem]) -> list[str]:
    entry = index.get(name)
    if entry is None:
        problems.append(Problem(f"lm-eval knows no task {name!r}", where))
        return []
    datasets = sorted({path for path in _dataset_paths(index, name, set()) if path})
    found, missing = [], []
    for dataset in datasets:
        cached = [str(c) for c in hub_cache_folders(dataset) if c.is_dir()]
        if cached:
            found += cached
        else:
            missing.append(dataset)
    if missing:
        looked = "; ".join(", ".join(map(str, hub_cache_folders(d))) for d in missing)
        problems.append(Problem(f"task {name}: its data ({', '.join(missing)}) is not in the local Hugging Face cache "
                                f"(looked in {looked}); nothing is downloaded at run time: fetch it once with "
                                "datasets.load_dataset on a machine with network, or give a local task YAML", where))
    return found


def _dataset_paths(index: dict[str, Any], name: str, seen: set[str]) -> list[str]:
    """The Hugging Face datasets a task, group or tag reads, through groups' members and tags' tasks."""
    if name in seen:
        return []
    seen.add(name)
    entry = index.get(name)
    if entry is None:
        return []
    kind = getattr(entry.kind, "name", str(entry.kind)).lower()
    config = entry.cfg or {}
    if kind == "task":
        return [config.get("dataset_path")]
    if kind == "group":
        members = config.get("task", [])
        members = members if isinstance(members, list) else [members]
        names = [m["task"] if isinstance(m, dict) else m for m in members]
        return [p for member in names if isinstance(member, str) for p in _dataset_paths(index, member, seen)]
    return [p for other, e in index.items() if name in (e.tags or set()) for p in _dataset_paths(index, other, seen)]
