"""The corpus on disk: deterministic, train and eval apart, never over a user's folder."""

import json

from shearc.cli import main
from shearc.corpus.domains import DOMAINS
from shearc.corpus.writer import documents, write_corpus


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    write_corpus(tmp_path / "a", train_documents=20, eval_documents=5, seed=3)
    write_corpus(tmp_path / "b", train_documents=20, eval_documents=5, seed=3)
    write_corpus(tmp_path / "c", train_documents=20, eval_documents=5, seed=4)
    for domain in DOMAINS:
        for split in ("train", "eval"):
            a, b, c = ((tmp_path / x / domain / f"{split}.jsonl").read_bytes() for x in "abc")
            assert a == b and a != c


def test_a_larger_corpus_starts_with_the_smaller_one_and_eval_is_apart():
    small, large = documents("code", 10, 0, "train"), documents("code", 30, 0, "train")
    assert large[:10] == small
    assert not set(documents("code", 30, 0, "eval")) & set(large)


def test_the_command_writes_every_domain_and_a_manifest(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["corpus", str(out), "--train-documents", "7", "--eval-documents", "3"]) == 0
    manifest = json.loads((out / "corpus.json").read_text())
    assert set(manifest["domains"]) == set(DOMAINS)
    for domain in DOMAINS:
        lines = (out / domain / "train.jsonl").read_text().splitlines()
        assert len(lines) == 7 and all(json.loads(line)["text"] for line in lines)
    assert main(["corpus", str(out), "--train-documents", "4"]) == 0  # an earlier corpus is replaced
    assert len((out / "prose" / "train.jsonl").read_text().splitlines()) == 4


def test_a_folder_that_is_not_a_corpus_is_left_alone(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["corpus", str(tmp_path)]) == 2
    assert "not a shearc corpus" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert main(["corpus", str(tmp_path / "notes.txt")]) == 2  # a file, not a folder
    assert (tmp_path / "notes.txt").read_text() == "mine"
