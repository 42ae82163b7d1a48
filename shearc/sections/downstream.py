"""`eval.lm_eval`: downstream tasks through lm-evaluation-harness, on the source and the result, offline.

    eval:
      lm_eval:
        preset: minitron                  # a paper's suite: its tasks, shots and the metric it reports
        tasks:                            # and/or tasks of your own
          - {task: hellaswag, metric: acc_norm, num_fewshot: 10}   # a task lm-eval knows by name
          - {path: tasks/arith.yaml, metric: acc}                  # a local task YAML (relative to the spec)
        limit: 200                        # examples per task (every one when unset)

Every task names the one metric shearc reports for it (lm-eval computes several: HellaSwag's acc and
acc_norm differ by 15 points, the cause of a long LLM-Pruner thread), written as lm-eval names it,
with its filter after a comma where the task has several (`exact_match,strict-match`). Nothing is
downloaded at run time: a task whose data is neither in local files nor in the local Hugging Face
cache is refused at compile time. Needs the `eval` extra (`pip install -e ".[eval]"`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import RuleError, Section

NEEDS_EXTRA = "needs lm-eval, the eval extra: pip install -e \".[eval]\" (or pip install \"lm-eval>=0.4.13,<0.5\")"


class LmEvalTaskSpec(Section):
    task: str | None = Field(None, min_length=1, description="A task (or group) lm-eval knows by name, e.g. "
                             "hellaswag, mmlu.")
    path: str | None = Field(None, min_length=1, description="Or a local lm-eval task YAML, relative to the spec; "
                             "its data files relative to the YAML.")
    metric: str = Field(min_length=1, description="The metric reported, as lm-eval names it (acc, acc_norm, "
                        "exact_match,strict-match, ...).")
    num_fewshot: int = Field(0, ge=0, description="Few-shot examples in each prompt.")

    @model_validator(mode="after")
    def _task_or_path(self) -> LmEvalTaskSpec:
        if (self.task is None) == (self.path is None):
            raise RuleError([((), "give exactly one of task (a name lm-eval knows) or path (a local task YAML)")])
        return self


# The suites the papers report, with the metric each reports (docs/EVALUATION.md gives the evidence).
PRESETS: dict[str, list[tuple[str, str, int]]] = {
    "llm-pruner": [("boolq", "acc", 0), ("piqa", "acc", 0), ("hellaswag", "acc_norm", 0), ("winogrande", "acc", 0),
                   ("arc_easy", "acc", 0), ("arc_challenge", "acc_norm", 0), ("openbookqa", "acc_norm", 0)],
    "sheared-llama": [("sciq", "acc", 0), ("piqa", "acc", 0), ("winogrande", "acc", 0), ("arc_easy", "acc", 0),
                      ("arc_challenge", "acc_norm", 25), ("hellaswag", "acc_norm", 10), ("logiqa", "acc_norm", 0),
                      ("boolq", "acc", 32), ("lambada_openai", "acc", 0),
                      ("nq_open", "exact_match,remove_whitespace", 32), ("mmlu", "acc", 5)],
    "minitron": [("mmlu", "acc", 5), ("hellaswag", "acc_norm", 10), ("winogrande", "acc", 5),
                 ("arc_challenge", "acc_norm", 25), ("gsm8k", "exact_match,strict-match", 5),
                 ("truthfulqa_mc2", "acc", 0)],
}


class LmEvalSpec(Section):
    preset: Literal["llm-pruner", "sheared-llama", "minitron"] | None = Field(
        None, description="A paper's suite (tasks, shots and the metric it reports), evaluated before `tasks`.")
    tasks: list[LmEvalTaskSpec] = Field([], description="Tasks of your own, after the preset's.")
    limit: int | None = Field(None, gt=0, description="Examples per task (every one when unset).")
    batch_size: int = Field(8, gt=0, description="Requests per forward pass.")

    @model_validator(mode="after")
    def _something(self) -> LmEvalSpec:
        if self.preset is None and not self.tasks:
            raise RuleError([((), "name a preset or at least one task")])
        return self

    def all_tasks(self) -> list[LmEvalTaskSpec]:
        """The preset's tasks, then the spec's own."""
        preset = [LmEvalTaskSpec(task=task, metric=metric, num_fewshot=shots)
                  for task, metric, shots in PRESETS.get(self.preset or "", [])]
        return preset + list(self.tasks)
