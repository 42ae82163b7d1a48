"""Downstream tasks through lm-evaluation-harness on an in-memory model, offline.

lm-eval's HFLM takes the model and tokenizer the run already holds. Tasks with the same number of
few-shot examples run together; a local task YAML is loaded by lm-eval's own loader and its data
files made absolute (relative to the YAML, where the compiler found them). The Hugging Face
libraries are put in offline mode first, so a task whose data is not local fails instead of
downloading (the compiler refuses those; this is the second line).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from shearc.compiler.downstream import map_data_files
from shearc.plan import DownstreamTaskPlan


def lm_eval_available() -> bool:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def offline() -> Iterator[None]:
    """HF_DATASETS_OFFLINE and HF_HUB_OFFLINE for the block, in the environment and in the libraries' settings
    (both read the environment once, when first imported)."""
    import datasets.config
    import huggingface_hub.constants

    saved_env = {key: os.environ.get(key) for key in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    saved = datasets.config.HF_DATASETS_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    datasets.config.HF_DATASETS_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_DATASETS_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def task_config(task: DownstreamTaskPlan, plan_dir: Path) -> str | dict[str, Any]:
    """What lm-eval is handed: a registered task's name, or a local YAML's config with absolute data files."""
    if task.path is None:
        return task.task
    from lm_eval.tasks._yaml_loader import load_yaml

    path = (plan_dir / task.path).resolve()
    return map_data_files(load_yaml(path), lambda file: str(path.parent / file))


def run_tasks(models: dict[str, torch.nn.Module], tokenizer: Any, tasks: list[DownstreamTaskPlan], plan_dir: Path, *,
              limit: int | None, batch_size: int, device: torch.device, seed: int, bos: bool,
              autocast: Callable[[], AbstractContextManager[Any]] = nullcontext) -> dict[str, list[dict[str, Any]]]:
    """Per model, per task in the plan's order: the metric's value, its standard error and the examples scored.
    `bos`: whether every request begins with BOS, as the plan's windows do (data.window_bos)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    scored = {}
    with offline():
        manager = TaskManager()  # indexes every task lm-eval ships (seconds): once for all models
        configs = [task_config(task, plan_dir) for task in tasks]
        for which, model in models.items():
            model.eval()
            harness = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device),
                           add_bos_token=bos)
            found: list[dict[str, Any] | None] = [None] * len(tasks)
            for shots in sorted({task.num_fewshot for task in tasks}):
                group = [number for number, task in enumerate(tasks) if task.num_fewshot == shots]
                # a task listed with several metrics (HellaSwag's acc and acc_norm) is evaluated once
                unique = {tasks[number].task: configs[number] for number in group}
                with autocast():
                    out = lm_eval.simple_evaluate(model=harness, tasks=list(unique.values()), num_fewshot=shots,
                                                  limit=limit, task_manager=manager, log_samples=False,
                                                  random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                                  fewshot_random_seed=seed)
                for number in group:
                    found[number] = _score(out, tasks[number])
            scored[which] = found
    return scored


def _score(out: dict[str, Any], task: DownstreamTaskPlan) -> dict[str, Any]:
    scores = out["results"][task.task]
    name, _, where = task.metric.partition(",")
    return {"value": float(scores[task.metric]), "stderr": _number(scores.get(f"{name}_stderr,{where}")),
            "samples": int(out.get("n-samples", {}).get(task.task, {}).get("effective", 0))}


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):  # lm-eval writes "N/A" where it has no standard error
        return None


def version() -> str:
    return importlib.metadata.version("lm_eval")
