"""The generated downstream task: right answers, distinct choices, seeded, and a YAML lm-eval reads."""

import json

from shearc.corpus.tasks import TASK, questions, write_choice_task, write_task


def test_each_question_marks_the_true_result_among_distinct_choices():
    made = questions(300, seed=0)
    for row in made:
        a, op, b, equals = row["question"].split()
        truth = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert equals == "=" and row["choices"][row["answer"]] == str(truth)
        assert len(set(row["choices"])) == len(row["choices"]) >= 2
    assert len({row["answer"] for row in made}) == 4  # the true result is not always in one place
    assert questions(20, seed=0) == made[:20] and questions(20, seed=1) != made[:20]


def test_the_written_task_is_what_lm_eval_loads(tmp_path):
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = write_task(tmp_path, count=7)
    assert entry == {"task": f"shearc_{TASK}", "yaml": f"tasks/{TASK}.yaml", "questions": 7}
    config = load_yaml(tmp_path / entry["yaml"])
    assert config["task"] == entry["task"] and config["output_type"] == "multiple_choice"
    assert config["dataset_kwargs"]["data_files"] == {"test": f"{TASK}.jsonl"}
    assert config["fewshot_delimiter"] == "\n" and config["target_delimiter"] == " "
    rows = [json.loads(line) for line in (tmp_path / "tasks" / f"{TASK}.jsonl").read_text().splitlines()]
    assert rows == questions(7, seed=0)


def test_any_rows_become_a_task_of_their_own_name(tmp_path):
    rows = [{"question": "The sky is", "choices": ["blue", "loud"], "answer": 0}]
    entry = write_choice_task(tmp_path, "sky", rows)
    assert entry["task"] == "shearc_sky" and (tmp_path / "tasks" / "sky.yaml").read_text().count("sky.jsonl") == 1
    assert json.loads((tmp_path / "tasks" / "sky.jsonl").read_text()) == rows[0]
