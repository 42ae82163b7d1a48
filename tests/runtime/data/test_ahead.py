"""`shearc data SPEC|PLAN` prepares a plan's data ahead of its run; explain then counts its tokens exactly."""

import json

from shearc.cli import main

from ...helpers import tiny_project, write_spec


def test_data_prepares_ahead_and_the_run_and_explain_read_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHEARC_CACHE", str(tmp_path / "cache"))
    plan_path = tiny_project(tmp_path, "llama-mha", {"prune": {"method": "taylor", "calibration_samples": 4,
                                                               "calibration_seq_len": 16, "reconstruct": None}})
    assert main(["explain", str(plan_path)]) == 0
    before = capsys.readouterr().out
    assert "(est.)" in before and "bytes a token (nothing prepared here yet)" in before

    assert main(["data", str(plan_path)]) == 0
    out = capsys.readouterr().out
    assert "tokenized 2 file(s)" in out and "tokens/s" in out
    counts = {line.split(":")[0]: int(line.split(":")[1].split()[0].replace(",", "")) for line in out.splitlines()
              if line.startswith(("a:", "b:"))}
    assert set(counts) == {"a", "b"} and all(count > 0 for count in counts.values())
    measured = json.loads((tmp_path / "cache" / "data" / "measured.json").read_text())
    assert measured["tokens_per_second"] > 0 and measured["bytes_per_token"] > 0

    assert main(["explain", str(plan_path)]) == 0
    after = capsys.readouterr().out
    assert "(est.)" not in after and "data: every file prepared" in after
    # 20 words + BOS + EOS for each of 30 documents, in each domain
    assert after.count(f"{30 * 22:,}") == 2

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr("shearc.runtime.data.prepare.encode", no_tokenizing)
    assert main(["data", str(plan_path)]) == 0  # a plan: same files, same tokenizer
    assert "every file was prepared already" in capsys.readouterr().out
    assert main(["run", str(plan_path)]) == 0
    assert "tokenized" not in capsys.readouterr().err


def test_a_spec_with_missing_data_is_exit_2_naming_the_domain(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SHEARC_CACHE", str(tmp_path / "cache"))
    plan_path = tiny_project(tmp_path, "llama-mha", {})
    (tmp_path / "data" / "b.jsonl").unlink()
    assert main(["data", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "domain 'b': no file matches" in err and "Traceback" not in err
    assert main(["data", str(write_spec(tmp_path, "name: [", "broken.yaml"))]) == 2
