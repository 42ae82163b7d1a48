"""Files are tokenized once per tokenizer, whatever lengths a plan's stages read them at."""

import json

from shearc.cli import main
from shearc.runtime.data import prepare

from ...helpers import tiny_project

TWO_LENGTHS = {
    "target": {"heads": 4, "intermediate": 96},
    "prune": {"method": "taylor", "calibration_samples": 4, "calibration_seq_len": 16},
    "recovery": {"method": "full", "steps": 2, "global_batch": 2, "seq_len": 24, "warmup_steps": 1,
                 "eval_interval": 2},
    "eval": {"sequences_per_domain": 3, "seq_len": 32},
    "schedule": {"micro_batch": 2},
    "export": {"dtype": "float32"},
}


def test_a_plan_reading_at_several_lengths_tokenizes_each_file_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHEARC_CACHE", str(tmp_path / "cache"))
    plan_path = tiny_project(tmp_path, "llama-mha", TWO_LENGTHS)
    plan = json.loads(plan_path.read_text())
    lengths = {plan["stages"][0]["params"]["calibration_seq_len"], plan["stages"][1]["check"]["tokens"],
               *(stage["params"]["seq_len"] for stage in plan["stages"][2:4])}
    assert len(lengths) >= 3  # calibration, recovery, evaluation (and the finalize check's)
    calls = []
    encode = prepare.encode
    monkeypatch.setattr(prepare, "encode", lambda documents, *rest: calls.append(documents) or encode(documents, *rest))
    assert main(["run", str(plan_path)]) == 0
    documents = [json.loads(line)["text"] for name in ("a", "b")
                 for line in (tmp_path / "data" / f"{name}.jsonl").read_text().splitlines()]
    assert sorted(text for batch in calls for text in batch) == sorted(documents)  # each document once
    assert "tokenized 2 file(s)" in capsys.readouterr().err
