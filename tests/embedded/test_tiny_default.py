"""The embedded default: shearc's own small model and corpus, and the tiny specs run end to end."""

import json
import re
import subprocess
import sys

import pytest
import yaml

from shearc.cli import main

from ..helpers import SPECS, data_plan

MODEL = SPECS / "tiny" / "model"
TINY_SPECS = ["tiny_drpruning.yaml", "tiny_sheared_llama.yaml", "tiny_llm_pruner.yaml", "tiny_minitron.yaml"]


def test_the_committed_model_is_a_small_gqa_llama_with_its_tokenizer_and_note():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (MODEL / "model.safetensors").stat().st_size <= 30 * 2**20
    model = AutoModelForCausalLM.from_pretrained(MODEL)
    config = model.config
    assert config.architectures == ["LlamaForCausalLM"]
    assert config.num_key_value_heads < config.num_attention_heads  # GQA: the KV-group path is exercised
    assert 1e6 < sum(p.numel() for p in model.parameters()) < 1e7
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    text = "sort 12 7 -> 7 12\n{\"id\": 3}"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert "| domain |" in (MODEL / "TRAINING.md").read_text()


def test_the_committed_weights_are_the_ones_the_training_note_measured(tmp_path):
    """Per-domain eval loss, recomputed on the regenerated eval split, matches training_log.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shearc.corpus.writer import write_corpus
    from shearc.runtime.data import domain_eval_losses, load_domains

    log = json.loads((MODEL / "training_log.json").read_text())
    args, final = log["args"], log["evals"][-1]
    write_corpus(tmp_path / "data", train_documents=30, seed=int(args["seed"]))
    names = list(final["eval_loss"])
    data = data_plan(*({"name": n, "train": [f"{n}/train.jsonl"], "eval": [f"{n}/eval.jsonl"]} for n in names))
    domains = load_domains(data, base_dir=tmp_path / "data", tokenizer=AutoTokenizer.from_pretrained(MODEL),
                           seq_len=int(args["seq_len"]), seed=0, cache_dir=tmp_path / "cache")
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    losses = domain_eval_losses(model, domains, seq_len=int(args["seq_len"]),
                                max_sequences=int(args["eval_sequences"]), batch_size=16)
    for name, loss in zip(names, losses, strict=True):
        assert loss == pytest.approx(final["eval_loss"][name], abs=2e-3), name


def _shortened(spec_name: str, tmp_path) -> dict:
    """A tiny spec with every stage cut to a few steps, written to TMP/specs/spec.yaml."""
    spec = yaml.safe_load((SPECS / spec_name).read_text())
    spec["source"]["model"] = str(MODEL)
    for section in ("prune", "recovery"):
        if "steps" in spec[section]:
            spec[section].update(steps=4, eval_interval=2, warmup_steps=1, global_batch=4, seq_len=64)
    lm_eval = spec["eval"].get("lm_eval")
    spec["eval"] = {"sequences_per_domain": 2, "seq_len": 64}
    if lm_eval:  # the spec's own downstream task, on a few of its questions
        spec["eval"]["lm_eval"] = {**lm_eval, "limit": 6}
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "spec.yaml").write_text(yaml.safe_dump(spec))
    return spec


@pytest.mark.parametrize("spec_name", TINY_SPECS)
def test_a_tiny_spec_runs_end_to_end_and_reports_every_domain(tmp_path, capsys, spec_name):
    """The README's default, with every stage cut to a few steps: corpus, compile, run, report, reload."""
    from transformers import AutoModelForCausalLM

    spec = _shortened(spec_name, tmp_path)
    lm_eval = spec["eval"].get("lm_eval")
    assert lm_eval or spec_name != "tiny_drpruning.yaml", "the README's default scores a downstream task"
    assert main(["corpus", str(tmp_path / "specs" / "tiny" / "data"), "--train-documents", "40",
                 "--eval-documents", "5"]) == 0
    plan = tmp_path / "plan.json"
    assert main(["compile", str(tmp_path / "specs" / "spec.yaml"), "-o", str(plan)]) == 0
    assert main(["run", str(plan)]) == 0
    run_dir = tmp_path / "runs" / spec["name"]
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    source = AutoModelForCausalLM.from_pretrained(MODEL)
    ratio = sum(p.numel() for p in model.parameters()) / sum(p.numel() for p in source.parameters())
    assert 0.4 < ratio < 0.6
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    for domain in ("arithmetic", "sorting", "json", "logs", "code", "prose"):
        assert re.search(rf"{domain}\s+│\s+\d+\.\d{{4}}\s+│\s+\d+\.\d{{4}}", out), domain  # loss before, after
    if lm_eval:  # lm-eval scored the source and the result; report.json, the card and the report say so
        downstream = json.loads((run_dir / "report.json").read_text())["downstream"]
        card = (run_dir / "model" / "README.md").read_text()
        assert len(downstream["tasks"]) == len(lm_eval["tasks"])
        for task in downstream["tasks"]:
            assert task["source"]["samples"] == task["result"]["samples"] == 6
            assert f"| {task['task']} | {task['metric']} | {task['num_fewshot']} |" in card
            assert re.search(rf"{task['task']}\s+│\s+{task['metric']}\s+│\s+{task['num_fewshot']}\s+│"
                             rf"\s+\d\.\d+", out), task["task"]


def test_the_default_prints_only_shearcs_lines_and_logs_the_libraries(tmp_path):
    """The README's commands on the shortened default, as a user runs them (separate processes): what reaches
    the terminal is shearc's own (a run's lines are the ones it keeps in RUN_DIR/run.log); lm-eval's,
    transformers' and datasets' lines and progress bars are in RUN_DIR/libraries.log."""
    spec = _shortened("tiny_drpruning.yaml", tmp_path)

    def shearc(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "shearc.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        return done

    quiet = [shearc("corpus", "specs/tiny/data", "--train-documents", "40", "--eval-documents", "5"),
             shearc("compile", "specs/spec.yaml", "-o", "plan.json")]
    run = shearc("run", "plan.json")
    quiet.append(shearc("report", f"runs/{spec['name']}"))
    assert [done.stderr for done in quiet] == ["", "", ""]
    run_dir = tmp_path / "runs" / spec["name"]
    own = set((run_dir / "run.log").read_text().splitlines())
    printed = [line for line in run.stderr.splitlines() if line.strip()]
    assert "stage evaluate ..." in printed and run.stdout == ""
    assert [line for line in printed if line not in own] == []
    libraries = (run_dir / "libraries.log").read_text()
    assert "Overwriting default num_fewshot" in libraries and "Running loglikelihood requests" in libraries
